package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/kube"
	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/rsyncexec"
)

// ManifestsCmd is the `krsync manifests` command: print the Kubernetes manifests of
// manifests/, customised, for `kubectl apply -f -`.
type ManifestsCmd struct {
	Name           string `help:"Name of this run: every object is named after it (NAME-coordinator, NAME-worker, NAME-token) and labelled app.kubernetes.io/instance=NAME, so several runs can share a namespace." default:"${runName}"`
	SourcePVC      string `help:"Claim to copy from (mounted read-only)." default:"${sourcePVC}"`
	DestPVC        string `help:"Claim to copy to." default:"${destPVC}"`
	SourceSubPath  string `name:"source-subpath" help:"Copy this directory of the source claim instead of its root (the subPath of both pods' mounts)." placeholder:"PATH"`
	DestSubPath    string `name:"dest-subpath" help:"Copy into this directory of the destination claim instead of its root (created when missing)." placeholder:"PATH"`
	Parallelism    int    `help:"Most worker pods at a time." default:"${parallelism}"`
	Namespace      string `short:"n" help:"Namespace of every object (default: none, kubectl's current namespace)."`
	Image          string `help:"krsync image, e.g. a mirror in your registry." default:"${image}"`
	PullPolicy     string `help:"Image pull policy." default:"${pullPolicy}" enum:"Always,IfNotPresent,Never"`
	FpartOpts      string `help:"fpart options of the coordinator's walk." default:"${fpartOptions}"`
	RsyncOpts      string `help:"rsync options of the workers." default:"${rsyncOptions}"`
	Restricted     bool   `help:"Pods that Pod Security Admission's restricted level admits: non-root, no added capabilities. Owners are not kept; files the image's user cannot read are not copied and the run fails naming them."`
	Mirror         bool   `help:"Render a mirror run: the destination ends an exact copy, what it holds and the source does not is deleted (the coordinator's --mirror)."`
	DryRun         bool   `help:"With --mirror: copy nothing, delete nothing, log what would be deleted (the coordinator's --dry-run)."`
	Verify         bool   `help:"After a complete copy the coordinator compares the destination with the source, metadata (its --verify)."`
	VerifyChecksum bool   `help:"Like --verify, and the contents of regular files too (its --verify-checksum)."`
	RequireEmpty   bool   `name:"require-empty-dest" help:"The coordinator refuses to start when the destination holds anything (its --require-empty-dest): a --mirror run into the wrong claim then deletes nothing."`
	Token          string `help:"Lease API token for the Secret (default: a new random one)."`
	OutputDir      string `help:"Write one file per object and a Kustomization into DIR instead of printing." placeholder:"DIR" type:"path"`
}

// Run renders the manifests and prints them, or writes them into --output-dir.
func (cmd ManifestsCmd) Run(streams Streams) error {
	if _, err := coordinator.ParsePartitioner(cmd.FpartOpts, 0, cmd.Parallelism); err != nil {
		return usagef("--fpart-opts: %v", err)
	}
	args, err := rsyncexec.ParseArgs(cmd.RsyncOpts)
	if err != nil {
		return usagef("--rsync-opts: %v", err)
	}
	if err := rsyncexec.ValidateArgs(args); err != nil {
		return usagef("--rsync-opts: %v", err)
	}
	token := cmd.Token
	if token == "" {
		token = leaseapi.NewToken()
	}
	files, err := kube.Render(kube.Params{
		Name: cmd.Name, Namespace: cmd.Namespace, SourcePVC: cmd.SourcePVC, DestPVC: cmd.DestPVC,
		SourceSubPath: cmd.SourceSubPath, DestSubPath: cmd.DestSubPath,
		Parallelism: cmd.Parallelism, Image: cmd.Image, PullPolicy: cmd.PullPolicy,
		FpartOpts: cmd.FpartOpts, RsyncOpts: cmd.RsyncOpts, Token: token,
		Restricted: cmd.Restricted, Mirror: cmd.Mirror, DryRun: cmd.DryRun, Verify: cmd.Verify, VerifyChecksum: cmd.VerifyChecksum,
		RequireEmptyDest: cmd.RequireEmpty,
	})
	if err != nil {
		return usageError{err}
	}
	if cmd.OutputDir == "" {
		_, err := streams.Stdout.Write(kube.Stream(files))
		return err
	}
	if err := os.MkdirAll(cmd.OutputDir, 0o755); err != nil {
		return fmt.Errorf("--output-dir: %w", err)
	}
	for _, f := range files {
		// 0600: the Secret's file holds the token.
		if err := os.WriteFile(filepath.Join(cmd.OutputDir, f.Name), f.Data, 0o600); err != nil {
			return fmt.Errorf("--output-dir: %w", err)
		}
	}
	fmt.Fprintf(streams.Stderr, "wrote %d files to %s; apply them with: kubectl apply -k %s\n", len(files), cmd.OutputDir, cmd.OutputDir)
	return nil
}
