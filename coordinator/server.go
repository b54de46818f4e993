package coordinator

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/krsync/krsync/leaseapi"
)

// Body size limits: small requests are small; a failure may list many failed paths.
const (
	maxBodyBytes     = 1 << 20
	maxFailBodyBytes = 8 << 20
	maxWorkerName    = 253 // a Kubernetes pod name
	maxErrorText     = 4096
)

// newServer builds the HTTP server of the lease API, with timeouts that bound slow clients
// but let a long poll (at most MaxWait) finish writing its answer.
func (c *Coordinator) newServer() *http.Server {
	return &http.Server{
		Handler:           c.handler(),
		TLSConfig:         c.tls,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      c.cfg.MaxWait + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(serverLogWriter{c}, "", 0),
	}
}

// serverLogWriter sends net/http's own complaints (TLS handshakes, bad requests) to zerolog.
type serverLogWriter struct{ c *Coordinator }

func (w serverLogWriter) Write(p []byte) (int, error) {
	w.c.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// handler routes the API. Every route but /healthz and /readyz needs the bearer token.
func (c *Coordinator) handler() http.Handler {
	api := http.NewServeMux()
	api.Handle(leaseapi.PathLease, onlyMethod(http.MethodPost, c.handleLease))
	api.Handle(leaseapi.PathRenew, onlyMethod(http.MethodPost, c.handleRenew))
	api.Handle(leaseapi.PathComplete, onlyMethod(http.MethodPost, c.handleComplete))
	api.Handle(leaseapi.PathFail, onlyMethod(http.MethodPost, c.handleFail))
	api.Handle(leaseapi.PathRelease, onlyMethod(http.MethodPost, c.handleRelease))
	api.Handle(leaseapi.PathStatus, onlyMethod(http.MethodGet, c.handleStatus))
	api.Handle(leaseapi.PathMetrics, onlyMethod(http.MethodGet, c.metrics.handler()))
	api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such route: "+r.URL.Path)
	})

	mux := http.NewServeMux()
	mux.Handle(leaseapi.PathHealthz, onlyMethod(http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	mux.Handle(leaseapi.PathReadyz, onlyMethod(http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		if !c.ready.Load() {
			writeError(w, http.StatusServiceUnavailable, "not serving")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}))
	mux.Handle("/", c.authenticate(api))
	return mux
}

// authenticate refuses a request without the bearer token, comparing in constant time
// (over SHA-256 sums, so the length of the token does not leak either).
func (c *Coordinator) authenticate(next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(c.cfg.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		if t := r.Header.Get(leaseapi.TokenHeader); auth == "" && t != "" {
			// Through the API server's service proxy (krsync status -n): the API server
			// consumes the Authorization header, so the token comes in a header of its own.
			auth = "Bearer " + t
		}
		const scheme = "bearer "
		var got [sha256.Size]byte
		ok := len(auth) > len(scheme) && strings.EqualFold(auth[:len(scheme)], scheme)
		if ok {
			got = sha256.Sum256([]byte(auth[len(scheme):]))
		}
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="krsync"`)
			writeError(w, http.StatusUnauthorized, "unauthorized: missing or wrong bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// onlyMethod answers 405 with a JSON error to any other method.
func onlyMethod(method string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use "+method)
			return
		}
		h(w, r)
	})
}

func (c *Coordinator) handleLease(w http.ResponseWriter, r *http.Request) {
	var req leaseapi.LeaseRequest
	if !decodeBody(w, r, maxBodyBytes, &req, false) {
		return
	}
	if err := checkWorkerName(req.Worker); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.WaitMS < 0 {
		writeError(w, http.StatusBadRequest, "wait_ms must not be negative")
		return
	}
	wait := time.Duration(min(req.WaitMS, c.cfg.MaxWait.Milliseconds())) * time.Millisecond
	if wait > 0 {
		select {
		case c.polls <- struct{}{}:
			defer func() { <-c.polls }()
		default:
			wait = 0 // too many long polls: answer at once
		}
	}
	resp, err := c.leases.lease(r.Context(), req.Worker, wait)
	switch {
	case r.Context().Err() != nil:
		return // the worker hung up; its lease, if any, went back to the queue
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (c *Coordinator) handleRenew(w http.ResponseWriter, r *http.Request) {
	id, req, ok := partitionRequest[leaseapi.RenewRequest](w, r, maxBodyBytes)
	if !ok {
		return
	}
	ttl, err := c.leases.renew(id, req.Token)
	if err != nil {
		writeQueueError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, leaseapi.RenewResponse{TTLMS: ttl.Milliseconds()})
}

func (c *Coordinator) handleComplete(w http.ResponseWriter, r *http.Request) {
	id, req, ok := partitionRequest[leaseapi.CompleteRequest](w, r, maxCompleteBodyBytes)
	if !ok {
		return
	}
	if req.Stats.FilesTransferred < 0 || req.Stats.BytesTransferred < 0 || req.Stats.Unchanged < 0 {
		writeError(w, http.StatusBadRequest, "stats must not be negative")
		return
	}
	if v := req.Stats.Verify; v != nil && (v.Dirs < 0 || v.Entries < 0 || v.ContentBytes < 0 || v.Differences < 0) {
		writeError(w, http.StatusBadRequest, "verify counts must not be negative")
		return
	}
	if err := c.leases.complete(id, req.Token, req.Stats); errors.Is(err, errNoVerifyReport) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	} else if err != nil {
		writeQueueError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *Coordinator) handleFail(w http.ResponseWriter, r *http.Request) {
	id, req, ok := partitionRequest[leaseapi.FailRequest](w, r, maxFailBodyBytes)
	if !ok {
		return
	}
	req.Error = truncate(strings.ToValidUTF8(req.Error, "?"), maxErrorText)
	if req.Error == "" {
		req.Error = "failed without a message"
	}
	if err := c.leases.fail(id, req); err != nil {
		writeQueueError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *Coordinator) handleRelease(w http.ResponseWriter, r *http.Request) {
	worker := r.PathValue("worker")
	if err := checkWorkerName(worker); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var req struct{}
	if !decodeBody(w, r, maxBodyBytes, &req, true) {
		return
	}
	writeJSON(w, http.StatusOK, leaseapi.ReleaseResponse{Released: c.ReleaseWorker(worker)})
}

func (c *Coordinator) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.leases.status())
}

// partitionRequest reads a request about one partition: the {id} path segment and a JSON
// body of at most limit bytes. When it returns false it has answered the request.
func partitionRequest[T any](w http.ResponseWriter, r *http.Request, limit int64) (int64, T, bool) {
	var req T
	id, ok := partitionID(w, r)
	if !ok || !decodeBody(w, r, limit, &req, false) {
		return 0, req, false
	}
	return id, req, true
}

// partitionID reads the {id} path segment: a positive decimal integer.
func partitionID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	s := r.PathValue("id")
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("partition id %q: want a positive integer", truncate(s, 40)))
		return 0, false
	}
	return id, true
}

// checkWorkerName accepts a name like a pod name: 1 to 253 bytes of printable UTF-8.
func checkWorkerName(name string) error {
	if name == "" {
		return errors.New("worker name is empty")
	}
	if len(name) > maxWorkerName {
		return fmt.Errorf("worker name is longer than %d bytes", maxWorkerName)
	}
	if !utf8.ValidString(name) || strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return errors.New("worker name must be printable UTF-8")
	}
	return nil
}

// decodeBody strictly decodes exactly one JSON value of at most limit bytes into v: unknown
// fields, trailing data and oversized bodies are refused with 400 or 413. An empty body is
// accepted only when emptyOK.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any, emptyOK bool) bool {
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", limit))
		case errors.Is(err, io.EOF) && emptyOK:
			return true
		case errors.Is(err, io.EOF):
			writeError(w, http.StatusBadRequest, "request body is empty; want a JSON object")
		default:
			writeError(w, http.StatusBadRequest, "bad request body: "+truncate(err.Error(), 200))
		}
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", limit))
			return false
		}
		writeError(w, http.StatusBadRequest, "bad request body: want exactly one JSON value")
		return false
	}
	return true
}

// writeQueueError maps the ledger's errors to status codes: its sentinels, and anything else
// (the journal could not record the change) as 500.
func writeQueueError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, leaseapi.ErrUnknownPartition):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, leaseapi.ErrStaleLease):
		writeError(w, http.StatusConflict, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, leaseapi.ErrorResponse{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
