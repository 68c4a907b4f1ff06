// Command ask asks NetGPT one question the way a UE does: ControlPlaneService.EstablishSession at
// the core, UserPlaneService.Generate streamed from the session's serving edge, ReleaseSession.
//
//	NETGPT_TLS_CA=ca.crt NETGPT_TLS_CERT=ue-1.crt NETGPT_TLS_KEY=ue-1.key \
//	  ask -core 127.0.0.1:50051 -ue ue-1 "Where can I eat near the harbour?"
//	NETGPT_INSECURE=1 ask "..."   # a loopback cluster started with --insecure
//
// Exit status: 0 answered, 1 a gRPC error (its code is printed), 2 a usage or setup error.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	netgptv1 "github.com/netgpt/netgpt/clients/go/netgpt/v1"
)

// transportFromEnv: all of NETGPT_TLS_CA/CERT/KEY → mutual TLS with those files; NETGPT_INSECURE=1 → plaintext.
func transportFromEnv() (grpc.DialOption, error) {
	names := []string{"NETGPT_TLS_CA", "NETGPT_TLS_CERT", "NETGPT_TLS_KEY"}
	var given, missing []string
	for _, name := range names {
		if os.Getenv(name) != "" {
			given = append(given, name)
		} else {
			missing = append(missing, name)
		}
	}
	switch insecure := os.Getenv("NETGPT_INSECURE"); {
	case (insecure == "1" || insecure == "true" || insecure == "yes") && len(given) > 0:
		return nil, fmt.Errorf("both NETGPT_INSECURE and %s are set; choose one", strings.Join(given, ", "))
	case insecure == "1" || insecure == "true" || insecure == "yes":
		return grpc.WithInsecure(), nil
	case len(given) == 0:
		return nil, errors.New("no client identity: set NETGPT_TLS_CA, NETGPT_TLS_CERT, NETGPT_TLS_KEY " +
			"(PEM files from `netgpt pki issue`), or NETGPT_INSECURE=1 for a loopback development cluster")
	case len(missing) > 0:
		return nil, fmt.Errorf("incomplete TLS material: %s not set", strings.Join(missing, ", "))
	}
	caPEM, err := os.ReadFile(os.Getenv("NETGPT_TLS_CA"))
	if err != nil {
		return nil, fmt.Errorf("NETGPT_TLS_CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("NETGPT_TLS_CA: no PEM certificate in the file")
	}
	pair, err := tls.LoadX509KeyPair(os.Getenv("NETGPT_TLS_CERT"), os.Getenv("NETGPT_TLS_KEY"))
	if err != nil {
		return nil, fmt.Errorf("NETGPT_TLS_CERT/NETGPT_TLS_KEY: %w", err)
	}
	config := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	return grpc.WithTransportCredentials(credentials.NewTLS(config)), nil
}

func ask(ctx context.Context, security grpc.DialOption, core, ue, cell, prompt string, maxNewTokens uint32) error {
	coreConn, err := grpc.DialContext(ctx, core, security)
	if err != nil {
		return err
	}
	defer coreConn.Close()
	cp := netgptv1.NewControlPlaneServiceClient(coreConn)
	callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	established, err := cp.EstablishSession(callCtx, &netgptv1.EstablishSessionRequest{UeId: ue, CellId: cell})
	if err != nil {
		return err
	}
	session := established.GetSession()
	defer func() {
		releaseCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = cp.ReleaseSession(releaseCtx, &netgptv1.ReleaseSessionRequest{SessionId: session.GetSessionId()})
	}()

	edgeConn, err := grpc.DialContext(ctx, session.GetServingEdge().GetAddress(), security)
	if err != nil {
		return err
	}
	defer edgeConn.Close()
	generateCtx, cancelGenerate := context.WithTimeout(ctx, 60*time.Second)
	defer cancelGenerate()
	stream, err := netgptv1.NewUserPlaneServiceClient(edgeConn).Generate(generateCtx, &netgptv1.GenerateRequest{
		SessionId: session.GetSessionId(),
		Kind:      netgptv1.PromptKind_PROMPT_KIND_CONCISE, // Go keeps the enum prefix: Type_VALUE
		Prompt:    prompt,
		Ran:       &netgptv1.RanContext{CellId: cell, UeId: ue, AiFlowId: session.GetAiFlowId()},
		Params:    &netgptv1.GenerationParams{MaxNewTokens: maxNewTokens},
	})
	if err != nil {
		return err
	}
	for {
		response, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch event := response.GetEvent().(type) {
		case *netgptv1.GenerateResponse_Tokens:
			fmt.Print(event.Tokens.GetText())
		case *netgptv1.GenerateResponse_Fallback:
			fmt.Printf("\n[cloud failed: %s; the edge answers]\n", event.Fallback.GetReason())
		case *netgptv1.GenerateResponse_Summary:
			summary := event.Summary
			fmt.Printf("\n[terminated_at=%s tokens=%d bytes_edge_to_cloud=%d session=%s]\n",
				summary.GetTerminatedAt(), summary.GetCompletionTokens(), summary.GetBytesEdgeToCloud(),
				summary.GetSessionId())
		}
	}
}

func main() {
	core := flag.String("core", "127.0.0.1:50051", "core controller address")
	ue := flag.String("ue", "ue-1", "UE id (with mutual TLS: the name of the ue certificate)")
	cell := flag.String("cell", "cell-harbour-1", "cell the UE is attached to")
	maxNewTokens := flag.Uint("max-new-tokens", 0, "0: the server default")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: ask [-core HOST:PORT] [-ue ID] [-cell ID] [-max-new-tokens N] PROMPT")
		os.Exit(2)
	}
	security, err := transportFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ask:", err)
		os.Exit(2)
	}
	if err := ask(context.Background(), security, *core, *ue, *cell, flag.Arg(0), uint32(*maxNewTokens)); err != nil {
		if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
			fmt.Fprintf(os.Stderr, "ask: %s: %s\n", s.Code(), s.Message())
		} else {
			fmt.Fprintln(os.Stderr, "ask:", err)
		}
		os.Exit(1)
	}
}
