// Command spdy-go-client is a Kubernetes streaming client for cri-ledger's tests, built
// on github.com/moby/spdystream (Debian's golang-github-docker-spdystream-dev), the SPDY
// library under client-go, kubectl, crictl and kubelet. It does what client-go's
// remotecommand (v2 to v5) and portforward packages do on the wire: the upgrade request
// with X-Stream-Protocol-Version, one stream per channel named by its streamType header,
// each stream's reply awaited, stdin half-closed at its end, resize as JSON, the error
// stream read to its end.
//
// exec and attach: this program's stdin, stdout and stderr are the session's; the raw
// error stream goes to -status-file; the exit code is the remote one (0 on Success, N on
// NonZeroExitCode), 1 for another error status, 2 when the upgrade or the streams fail.
//
// portforward: -requests concurrent requests to -port, each sending -size bytes on its
// data stream, half-closing it, and expecting them echoed back; one JSON line on stdout
// says how many matched and what the error streams said.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/moby/spdystream"
)

// createStreamTimeout is client-go's createStreamResponseTimeout.
const createStreamTimeout = 30 * time.Second

var (
	rawURL    = flag.String("url", "", "streaming URL from the CRI Exec, Attach or PortForward response")
	mode      = flag.String("mode", "exec", "exec, attach or portforward")
	protocols = flag.String("protocols", "", "offered protocols, most preferred first (default: client-go's for the mode)")
	stdin     = flag.Bool("stdin", false, "open a stdin stream fed from this program's stdin")
	stdout    = flag.Bool("stdout", true, "open a stdout stream")
	stderr    = flag.Bool("stderr", true, "open a stderr stream (not with -tty)")
	tty       = flag.Bool("tty", false, "a terminal session: no stderr stream, a resize stream from v3")
	resize    = flag.String("resize", "", "terminal sizes to send, e.g. 80x24,100x40")
	statusOut = flag.String("status-file", "", "where to write the raw bytes of the error stream")
	pingMs    = flag.Int("ping-ms", 0, "send a SPDY PING this often, as client-go does every 5 s")
	caFile    = flag.String("ca", "", "PEM file of the CA that signed the server's certificate (https)")
	port      = flag.Int("port", 0, "portforward: the port")
	requests  = flag.Int("requests", 1, "portforward: concurrent requests")
	size      = flag.Int("size", 1024, "portforward: bytes each request sends and expects back")
	holdMs    = flag.Int("hold-ms", 0, "portforward: keep the connection open this long after the requests, or until the server closes it")
	abandon   = flag.Bool("abandon", false, "leave right after the upgrade, before opening any stream (a client that goes away)")
	stall     = flag.Bool("stall", false, "after the upgrade, open no stream and leave once stdin ends (a client that goes away later)")
	traceOut  = flag.Bool("trace", false, "print when each phase ended to stderr, as 'trace PHASE MICROSECONDS' (benchmarks)")
)

var started = time.Now()

// trace notes that a phase ended, for -trace.
func trace(phase string) {
	if *traceOut {
		fmt.Fprintf(os.Stderr, "trace %s %d\n", phase, time.Since(started).Microseconds())
	}
}

// firstByte notes the first read that returned bytes, once.
type firstByte struct {
	r    io.Reader
	once sync.Once
}

func (f *firstByte) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 {
		f.once.Do(func() { trace("first-stdout") })
	}
	return n, err
}

func main() {
	flag.Parse()
	if !flagSet("protocols") {
		if *mode == "portforward" {
			*protocols = "portforward.k8s.io"
		} else {
			*protocols = "v5.channel.k8s.io,v4.channel.k8s.io,v3.channel.k8s.io,v2.channel.k8s.io,channel.k8s.io"
		}
	}
	conn, protocol, err := dial()
	if err != nil {
		fmt.Fprintf(os.Stderr, "spdy-go-client: %v\n", err)
		os.Exit(2)
	}
	defer conn.Close()
	if *abandon || *stall {
		if *stall {
			_, _ = io.Copy(io.Discard, os.Stdin)
		}
		conn.Close()
		os.Exit(0)
	}
	if *pingMs > 0 {
		go func() {
			for range time.Tick(time.Duration(*pingMs) * time.Millisecond) {
				if _, err := conn.Ping(); err != nil {
					return
				}
			}
		}()
	}
	if *mode == "portforward" {
		os.Exit(portForward(conn))
	}
	os.Exit(remoteCommand(conn, protocol))
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// bufferedConn reads through the reader that read the HTTP response, so no SPDY bytes
// that arrived with it are lost.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func dial() (*spdystream.Connection, string, error) {
	u, err := url.Parse(*rawURL)
	if err != nil {
		return nil, "", err
	}
	var raw net.Conn
	if u.Scheme == "https" {
		config := &tls.Config{ServerName: u.Hostname()}
		if *caFile != "" {
			pem, err := ioutil.ReadFile(*caFile)
			if err != nil {
				return nil, "", err
			}
			config.RootCAs = x509.NewCertPool()
			config.RootCAs.AppendCertsFromPEM(pem)
		}
		raw, err = tls.Dial("tcp", u.Host, config)
	} else {
		raw, err = net.Dial("tcp", u.Host)
	}
	if err != nil {
		return nil, "", err
	}
	trace("connected")
	req, _ := http.NewRequest("POST", u.String(), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	for _, p := range strings.Split(*protocols, ",") {
		if p != "" {
			req.Header.Add("X-Stream-Protocol-Version", p)
		}
	}
	if err := req.Write(raw); err != nil {
		return nil, "", err
	}
	reader := bufio.NewReader(raw)
	resp, err := http.ReadResponse(reader, req)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := ioutil.ReadAll(resp.Body)
		return nil, "", fmt.Errorf("upgrade refused: %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if !strings.Contains(strings.ToLower(resp.Header.Get("Upgrade")), "spdy/3.1") {
		return nil, "", fmt.Errorf("upgrade refused: Upgrade %q", resp.Header.Get("Upgrade"))
	}
	trace("upgraded")
	conn, err := spdystream.NewConnection(&bufferedConn{Conn: raw, r: reader}, false)
	if err != nil {
		return nil, "", err
	}
	go conn.Serve(spdystream.NoOpStreamHandler)
	return conn, resp.Header.Get("X-Stream-Protocol-Version"), nil
}

func createStream(conn *spdystream.Connection, headers http.Header) (*spdystream.Stream, error) {
	stream, err := conn.CreateStream(headers, nil, false)
	if err != nil {
		return nil, err
	}
	if err := stream.WaitTimeout(createStreamTimeout); err != nil {
		return nil, err
	}
	return stream, nil
}

func open(conn *spdystream.Connection, streamType string) *spdystream.Stream {
	headers := http.Header{}
	headers.Set("streamType", streamType)
	stream, err := createStream(conn, headers)
	if err != nil {
		fmt.Fprintf(os.Stderr, "spdy-go-client: creating the %s stream: %v\n", streamType, err)
		os.Exit(2)
	}
	return stream
}

// remoteCommand runs client-go's stream sequence for v2 to v5 (v1 differs only in what the
// server does), and returns this program's exit code.
func remoteCommand(conn *spdystream.Connection, protocol string) int {
	errorStream := open(conn, "error")
	var wg sync.WaitGroup
	if *stdin {
		in := open(conn, "stdin")
		go func() {
			io.Copy(in, os.Stdin)
			in.Close()
		}()
	}
	if *stdout {
		out := open(conn, "stdout")
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(os.Stdout, &firstByte{r: out})
			trace("stdout-end")
		}()
	}
	if *stderr && !*tty {
		errOut := open(conn, "stderr")
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(os.Stderr, errOut)
		}()
	}
	if *tty && protocol != "v2.channel.k8s.io" && protocol != "channel.k8s.io" && protocol != "" {
		resizeStream := open(conn, "resize")
		encoder := json.NewEncoder(resizeStream)
		for _, s := range strings.Split(*resize, ",") {
			var w, h uint16
			if _, err := fmt.Sscanf(s, "%dx%d", &w, &h); err == nil {
				encoder.Encode(map[string]uint16{"Width": w, "Height": h})
			}
		}
	}
	trace("streams")
	status, _ := ioutil.ReadAll(errorStream)
	trace("status")
	wg.Wait()
	trace("done")
	if *statusOut != "" {
		ioutil.WriteFile(*statusOut, status, 0o644)
	}
	return exitCode(protocol, status)
}

type statusCause struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

type metaStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
	Details *struct {
		Causes []statusCause `json:"causes"`
	} `json:"details"`
}

// exitCode reads the error stream as client-go's errorDecoderV4 (JSON) or V1 (text) does.
func exitCode(protocol string, status []byte) int {
	if !strings.HasPrefix(protocol, "v4.") && !strings.HasPrefix(protocol, "v5.") {
		if len(status) == 0 {
			return 0
		}
		fmt.Fprintf(os.Stderr, "error executing remote command: %s\n", status)
		return 1
	}
	var s metaStatus
	if err := json.Unmarshal(status, &s); err != nil {
		fmt.Fprintf(os.Stderr, "error stream protocol error: %v in %q\n", err, status)
		return 1
	}
	if s.Status == "Success" {
		return 0
	}
	if s.Reason == "NonZeroExitCode" && s.Details != nil {
		for _, c := range s.Details.Causes {
			if c.Reason == "ExitCode" {
				var code int
				fmt.Sscanf(c.Message, "%d", &code)
				fmt.Fprintln(os.Stderr, s.Message)
				return code
			}
		}
	}
	fmt.Fprintln(os.Stderr, s.Message)
	return 1
}

type forwardReport struct {
	Requests int      `json:"requests"`
	Matched  int      `json:"matched"`
	Errors   []string `json:"errors"`
}

// portForward opens the requests at once, as kubectl does for concurrent local
// connections: for each, the error stream then the data stream, with one requestID.
func portForward(conn *spdystream.Connection) int {
	report := forwardReport{Requests: *requests, Errors: []string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < *requests; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			matched, message := forwardOne(conn, id)
			mu.Lock()
			defer mu.Unlock()
			if matched {
				report.Matched++
			}
			if message != "" {
				report.Errors = append(report.Errors, message)
			}
		}(i)
	}
	wg.Wait()
	if *holdMs > 0 {
		select {
		case <-conn.CloseChan():
		case <-time.After(time.Duration(*holdMs) * time.Millisecond):
		}
	}
	json.NewEncoder(os.Stdout).Encode(report)
	if report.Matched == report.Requests {
		return 0
	}
	return 1
}

func forwardOne(conn *spdystream.Connection, id int) (bool, string) {
	headers := http.Header{}
	headers.Set("streamType", "error")
	headers.Set("port", fmt.Sprintf("%d", *port))
	headers.Set("requestID", fmt.Sprintf("%d", id))
	errorStream, err := createStream(conn, headers)
	if err != nil {
		return false, err.Error()
	}
	// client-go writes nothing on the error stream and says so at once, and reads it
	// alongside the data: spdystream hands a frame over only when its stream is read.
	errorStream.Close()
	errorMessage := make(chan string, 1)
	go func() {
		message, _ := ioutil.ReadAll(errorStream)
		errorMessage <- string(message)
	}()
	headers.Set("streamType", "data")
	dataStream, err := createStream(conn, headers)
	if err != nil {
		return false, err.Error()
	}
	payload := make([]byte, *size)
	for i := range payload {
		payload[i] = byte(id + i)
	}
	go func() {
		// In 32 KiB writes, as client-go's io.Copy from the local connection: one DATA
		// frame each (a SPDY frame holds at most 16 MiB).
		for offset := 0; offset < len(payload); offset += 32 * 1024 {
			end := offset + 32*1024
			if end > len(payload) {
				end = len(payload)
			}
			if _, err := dataStream.Write(payload[offset:end]); err != nil {
				break
			}
		}
		dataStream.Close()
	}()
	echoed, _ := ioutil.ReadAll(dataStream)
	return bytes.Equal(echoed, payload), <-errorMessage
}
