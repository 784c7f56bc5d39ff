// tcp-echo-server sends every byte of each TCP connection back, and half-closes the
// connection once the peer has (so a client reads the whole echo, then end-of-file).
// The port-forward tests run it inside a pod's container (the static binary is mounted
// in). busybox's `nc -ll -e cat` (a fork and exec per connection) was tried first: with 32
// connections at once on a loaded machine it reset some of them before reading a byte,
// a fault of the echo server that made the forwarding under test look flaky.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	port := flag.Int("port", 8080, "TCP port to listen on, on every address")
	resetPort := flag.Int("reset-port", 0, "also listen here, and reset each connection once its first byte came")
	flag.Parse()
	if *resetPort != 0 {
		go serve(listen(*resetPort), reset)
	}
	serve(listen(*port), echo)
}

func listen(port int) net.Listener {
	listener, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "tcp-echo-server: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("tcp-echo-server: listening on %s\n", listener.Addr())
	return listener
}

func serve(listener net.Listener, handle func(*net.TCPConn)) {
	for {
		conn, err := listener.Accept()
		if err != nil {
			fmt.Fprintf(os.Stderr, "tcp-echo-server: accept: %v\n", err)
			continue
		}
		go handle(conn.(*net.TCPConn))
	}
}

// reset answers RST: what a server that crashes or is killed mid-connection leaves.
func reset(conn *net.TCPConn) {
	conn.Read(make([]byte, 1))
	conn.SetLinger(0)
	conn.Close()
}

func echo(conn *net.TCPConn) {
	defer conn.Close()
	if _, err := io.Copy(conn, conn); err != nil {
		return
	}
	conn.CloseWrite()
}
