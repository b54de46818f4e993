package leaseapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// Errors a caller branches on, from the status code of the coordinator's answer.
var (
	// ErrStaleLease: the lease expired or was handed to someone else (409).
	ErrStaleLease = errors.New("lease is stale: the partition belongs to another lease now")
	// ErrUnknownPartition: no such partition (404).
	ErrUnknownPartition = errors.New("unknown partition")
	// ErrUnauthorized: missing or wrong bearer token (401).
	ErrUnauthorized = errors.New("unauthorized: wrong or missing lease API token")
	// ErrUnreachable: the coordinator did not answer within the give-up deadline.
	ErrUnreachable = errors.New("coordinator unreachable")
)

// ClientOptions tune the client; the zero value is usable.
type ClientOptions struct {
	// Token is sent as "Authorization: Bearer <token>".
	Token string
	// GiveUpAfter bounds how long one call keeps retrying an unreachable or failing
	// coordinator (connection errors, 5xx). Zero means 2 minutes.
	GiveUpAfter time.Duration
	// CAFile, when set, is the PEM bundle that verifies the coordinator's TLS certificate.
	CAFile string
	// RetryWaitMin and RetryWaitMax bound the exponential backoff; zero means 100ms and 5s.
	RetryWaitMin, RetryWaitMax time.Duration
}

// Client calls a coordinator's lease API. It retries through go-retryablehttp.
type Client struct {
	base  *url.URL
	token string
	http  *retryablehttp.Client
}

type startKey struct{}

// NewClient returns a client for the coordinator at baseURL (http:// or https://).
func NewClient(baseURL string, opts ClientOptions) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("coordinator URL %q: want http://host:port or https://host:port", baseURL)
	}
	giveUp := opts.GiveUpAfter
	if giveUp == 0 {
		giveUp = 2 * time.Minute
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("coordinator CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("coordinator CA %s: no PEM certificate in it", opts.CAFile)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: transport} // no overall timeout: lease calls long-poll; contexts bound them
	rc.Logger = nil
	rc.RetryMax = math.MaxInt32 // bounded by GiveUpAfter in CheckRetry instead of a count
	rc.RetryWaitMin, rc.RetryWaitMax = opts.RetryWaitMin, opts.RetryWaitMax
	if rc.RetryWaitMin == 0 {
		rc.RetryWaitMin = 100 * time.Millisecond
	}
	if rc.RetryWaitMax == 0 {
		rc.RetryWaitMax = 5 * time.Second
	}
	rc.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		retry, cerr := retryablehttp.DefaultRetryPolicy(ctx, resp, err)
		if !retry || cerr != nil {
			return retry, cerr
		}
		if start, ok := ctx.Value(startKey{}).(time.Time); ok && time.Since(start) > giveUp {
			return false, nil
		}
		return true, nil
	}
	rc.ErrorHandler = func(resp *http.Response, err error, attempts int) (*http.Response, error) {
		if err == nil && resp != nil {
			return resp, nil // a 5xx after the last try: let the caller read its error body
		}
		return resp, fmt.Errorf("%w after %d attempts over %s: %v", ErrUnreachable, attempts, giveUp, err)
	}
	return &Client{base: u, token: opts.Token, http: rc}, nil
}

// Lease asks for a partition, waiting up to wait for one while the walk goes on.
func (c *Client) Lease(ctx context.Context, worker string, wait time.Duration) (LeaseResponse, error) {
	var out LeaseResponse
	err := c.call(ctx, http.MethodPost, PathLease, LeaseRequest{Worker: worker, WaitMS: wait.Milliseconds()}, &out)
	if err != nil {
		return out, fmt.Errorf("lease: %w", err)
	}
	switch out.State {
	case LeaseGranted:
		if out.Lease == nil {
			return out, errors.New("lease: coordinator granted a lease without one")
		}
	case LeaseWait, LeaseDone:
	default:
		return out, fmt.Errorf("lease: unknown state %q from coordinator", out.State)
	}
	return out, nil
}

// Renew extends the lease on partition id and returns its new time to live.
func (c *Client) Renew(ctx context.Context, id int64, token string) (time.Duration, error) {
	var out RenewResponse
	if err := c.call(ctx, http.MethodPost, partitionPath(PathRenew, id), RenewRequest{Token: token}, &out); err != nil {
		return 0, fmt.Errorf("partition %d: renew: %w", id, err)
	}
	return time.Duration(out.TTLMS) * time.Millisecond, nil
}

// Complete reports partition id copied.
func (c *Client) Complete(ctx context.Context, id int64, token string, stats TransferStats) error {
	if err := c.call(ctx, http.MethodPost, partitionPath(PathComplete, id), CompleteRequest{Token: token, Stats: stats}, nil); err != nil {
		return fmt.Errorf("partition %d: complete: %w", id, err)
	}
	return nil
}

// Fail reports partition id not copied.
func (c *Client) Fail(ctx context.Context, id int64, req FailRequest) error {
	if err := c.call(ctx, http.MethodPost, partitionPath(PathFail, id), req, nil); err != nil {
		return fmt.Errorf("partition %d: fail: %w", id, err)
	}
	return nil
}

// Release hands back every lease held by worker (a pod that is gone).
func (c *Client) Release(ctx context.Context, worker string) (int, error) {
	var out ReleaseResponse
	p := strings.Replace(PathRelease, "{worker}", url.PathEscape(worker), 1)
	if err := c.call(ctx, http.MethodPost, p, struct{}{}, &out); err != nil {
		return 0, fmt.Errorf("release worker %s: %w", worker, err)
	}
	return out.Released, nil
}

// Status fetches the coordinator's progress.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	if err := c.call(ctx, http.MethodGet, PathStatus, nil, &out); err != nil {
		return out, fmt.Errorf("status: %w", err)
	}
	return out, nil
}

func partitionPath(route string, id int64) string {
	return strings.Replace(route, "{id}", strconv.FormatInt(id, 10), 1)
}

// call sends one request and decodes a 2xx JSON answer into out (when out is not nil).
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	u := strings.TrimSuffix(c.base.String(), "/") + path // path segments are escaped already
	ctx = context.WithValue(ctx, startKey{}, time.Now())
	req, err := retryablehttp.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e ErrorResponse
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		switch resp.StatusCode {
		case http.StatusConflict:
			return fmt.Errorf("%w (%s)", ErrStaleLease, msg)
		case http.StatusNotFound:
			return fmt.Errorf("%w (%s)", ErrUnknownPartition, msg)
		case http.StatusUnauthorized:
			return ErrUnauthorized
		}
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, msg)
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}
