package main

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/krsync/krsync/kube"
	"github.com/krsync/krsync/leaseapi"
)

// StatusCmd is the `krsync status` command: the progress of a running sync, the numbers of
// the local progress bar, from a coordinator URL or through the API server's service proxy.
type StatusCmd struct {
	Coordinator string        `help:"URL of the coordinator's lease API, e.g. http://krsync-coordinator:8080 from a pod." placeholder:"URL"`
	Namespace   string        `short:"n" help:"Namespace of a krsync run in Kubernetes, reached through the API server's service proxy (default: the kubeconfig's namespace)."`
	Kubeconfig  string        `help:"kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)." placeholder:"FILE"`
	Name        string        `help:"Name of the run with -n (krsync manifests --name): its Service NAME-coordinator and token Secret NAME-token." default:"${runName}"`
	Service     string        `help:"Service of the coordinator (default: NAME-coordinator)."`
	Port        int           `help:"Port of the coordinator's Service." default:"8080"`
	TokenFile   string        `help:"File holding the lease API token (default with -n: the run's Secret NAME-token; or set KRSYNC_TOKEN)." placeholder:"FILE"`
	Token       string        `help:"The lease API token; prefer KRSYNC_TOKEN or --token-file." hidden:""`
	Watch       bool          `short:"w" help:"Refresh every --interval until the sync has finished."`
	Interval    time.Duration `help:"Refresh interval of --watch." default:"2s"`
	JSON        bool          `help:"Print the coordinator's status as JSON."`
}

// Run fetches the status once, or until the end with --watch.
func (cmd StatusCmd) Run(ctx context.Context, streams Streams) error {
	if cmd.Coordinator != "" && cmd.Namespace != "" {
		return usagef("give either --coordinator URL or -n NAMESPACE, not both")
	}
	if cmd.Interval <= 0 {
		return usagef("--interval must be positive")
	}
	fetch, err := cmd.fetcher(ctx)
	if err != nil {
		return err
	}
	for {
		st, err := fetch(ctx)
		if err != nil {
			return err
		}
		if err := cmd.print(streams.Stdout, st); err != nil {
			return err
		}
		if !cmd.Watch || st.Finished {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(cmd.Interval):
		}
	}
}

// fetcher returns the function that reads the status, direct or through the service proxy.
func (cmd StatusCmd) fetcher(ctx context.Context) (func(context.Context) (leaseapi.Status, error), error) {
	token, err := apiToken(cmd.TokenFile, cmd.Token)
	if err != nil {
		return nil, err
	}
	if cmd.Coordinator != "" {
		client, err := leaseapi.NewClient(cmd.Coordinator, leaseapi.ClientOptions{Token: token, GiveUpAfter: 10 * time.Second})
		if err != nil {
			return nil, usagef("%v (--coordinator)", err)
		}
		return client.Status, nil
	}
	cs, _, ns, err := kube.Clientset(cmd.Kubeconfig)
	if err != nil {
		return nil, usagef("%v; or give --coordinator URL", err)
	}
	if cmd.Namespace != "" {
		ns = cmd.Namespace
	}
	if err := kube.ValidateRunName(cmd.Name); err != nil {
		return nil, usagef("%v", err)
	}
	service := cmd.Service
	if service == "" {
		service = kube.NamesFor(cmd.Name).Coordinator
	}
	if token == "" {
		if token, err = kube.ReadToken(ctx, cs, ns, cmd.Name); err != nil {
			return nil, err
		}
	}
	return func(ctx context.Context) (leaseapi.Status, error) {
		return kube.ProxyStatus(ctx, cs, ns, service, cmd.Port, token)
	}, nil
}

func (cmd StatusCmd) print(w io.Writer, st leaseapi.Status) error {
	if cmd.JSON {
		enc := json.NewEncoder(w)
		return enc.Encode(st)
	}
	_, err := io.WriteString(w, st.Report(time.Now()))
	return err
}
