// Command cri-go-client is a CRI client for cri-ledger's tests that dials the socket the
// way kubelet (before 1.30), crictl and critest do: grpc-go, a plain socket path as the
// target with a unix context dialer, so the HTTP/2 :authority is that path.
//
// It knows no CRI message: the test encodes each request and decodes each response, and
// this program moves the bytes. One JSON object a line on stdin,
//
//	{"id":1,"method":"/runtime.v1.RuntimeService/Version","request":"<base64>","timeoutMs":10000}
//
// gets one line on stdout (in completion order; calls run concurrently),
//
//	{"id":1,"code":0,"message":"","response":"<base64>","elapsedUs":412}
//
// with code the gRPC status code and elapsedUs the call's time in this process. It exits once stdin is closed and every call answered.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// maxMsgSize is kubelet's limit for CRI messages in both directions.
const maxMsgSize = 16 * 1024 * 1024

const defaultTimeoutMs = 10000

type request struct {
	ID        int64  `json:"id"`
	Method    string `json:"method"`
	Request   []byte `json:"request"`
	TimeoutMs int64  `json:"timeoutMs"`
}

type response struct {
	ID       int64  `json:"id"`
	Code     uint32 `json:"code"`
	Message  string `json:"message"`
	Response []byte `json:"response"`
	// ElapsedUs is the call's own time in this process, from Invoke to its answer: what a
	// benchmark reads, without the pipe to the test in it.
	ElapsedUs int64 `json:"elapsedUs"`
}

// rawCodec sends and receives messages as they are: the caller holds serialized protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) {
	switch b := v.(type) {
	case *[]byte:
		return *b, nil
	case []byte:
		return b, nil
	}
	return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	// grpc-go may reuse data's buffer once Unmarshal returns.
	*b = append([]byte(nil), data...)
	return nil
}

// Name is not sent: with ForceCodec, grpc-go 1.33 keeps the content-type application/grpc.
func (rawCodec) Name() string { return "raw" }

func main() {
	socket := flag.String("socket", "", "path of the CRI unix socket")
	authority := flag.String("authority", "", "send this :authority instead of the socket path (experiments only)")
	flag.Parse()
	if *socket == "" {
		fmt.Fprintln(os.Stderr, "usage: cri-go-client -socket PATH [-authority VALUE]")
		os.Exit(2)
	}
	options := []grpc.DialOption{
		grpc.WithInsecure(),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)),
	}
	if *authority != "" {
		options = append(options, grpc.WithAuthority(*authority))
	}
	// Non-blocking, as kubelet's: a call made before the connection is up waits for it.
	conn, err := grpc.DialContext(context.Background(), *socket, options...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	defer conn.Close()

	var out sync.Mutex
	encoder := json.NewEncoder(os.Stdout)
	reply := func(r response) {
		out.Lock()
		defer out.Unlock()
		if err := encoder.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, "write:", err)
			os.Exit(1)
		}
	}

	var calls sync.WaitGroup
	lines := bufio.NewScanner(os.Stdin)
	// A request line holds a base64 message of up to maxMsgSize.
	lines.Buffer(make([]byte, 64*1024), 2*maxMsgSize)
	for lines.Scan() {
		var req request
		if err := json.Unmarshal(lines.Bytes(), &req); err != nil {
			fmt.Fprintln(os.Stderr, "bad request line:", err)
			os.Exit(1)
		}
		calls.Add(1)
		go func(req request) {
			defer calls.Done()
			reply(invoke(conn, req))
		}(req)
	}
	if err := lines.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "read:", err)
		os.Exit(1)
	}
	calls.Wait()
}

func invoke(conn *grpc.ClientConn, req request) response {
	timeout := req.TimeoutMs
	if timeout <= 0 {
		timeout = defaultTimeoutMs
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeout)*time.Millisecond)
	defer cancel()
	in := req.Request
	var reply []byte
	started := time.Now()
	err := conn.Invoke(ctx, req.Method, &in, &reply, grpc.ForceCodec(rawCodec{}))
	elapsed := time.Since(started).Microseconds()
	s := status.Convert(err)
	return response{ID: req.ID, Code: uint32(s.Code()), Message: s.Message(), Response: reply, ElapsedUs: elapsed}
}
