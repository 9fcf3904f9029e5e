package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// odeVersion is the app version sent in x-ode-version; the server compares the major.
const odeVersion = "1.0.0"

// client talks to the server the way the Formulus app does, over one shared transport.
type client struct {
	baseURL string
	hc      *http.Client
}

func newClient(baseURL string, conns int, timeout time.Duration) *client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = conns+4, conns+4
	return &client{baseURL: baseURL, hc: &http.Client{Transport: t, Timeout: timeout}}
}

// post sends body and reads the whole response into buf, returning the status.
func (c *client) post(ctx context.Context, path, token string, body []byte, buf *bytes.Buffer) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("x-ode-version", odeVersion)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return 0, fmt.Errorf("error reading the response of %s: %w", path, err)
	}
	return resp.StatusCode, nil
}

// call posts in as JSON, expects status want and decodes the answer into out.
func (c *client) call(ctx context.Context, path, token string, in any, want int, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	status, err := c.post(ctx, path, token, body, &buf)
	if err != nil {
		return err
	}
	if status != want {
		return statusError(path, status, buf.Bytes())
	}
	if err := json.Unmarshal(buf.Bytes(), out); err != nil {
		return fmt.Errorf("error decoding the response of %s: %w", path, err)
	}
	return nil
}

func statusError(path string, status int, body []byte) error {
	if len(body) > 500 {
		body = body[:500]
	}
	return fmt.Errorf("%s: HTTP %d: %s", path, status, body)
}

// setupUsers logs in as admin, creates n read-write users and returns the admin's token
// and theirs.
func setupUsers(ctx context.Context, c *client, adminPassword string, n int) (string, []string, error) {
	type login struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	var auth struct {
		Token string `json:"token"`
	}
	if err := c.call(ctx, "/api/auth/login", "", login{"admin", adminPassword}, http.StatusOK, &auth); err != nil {
		return "", nil, fmt.Errorf("admin login: %w", err)
	}
	admin := auth.Token
	tokens := make([]string, n)
	for i := range tokens {
		user := login{Username: fmt.Sprintf("bench_%d", i), Password: randomToken(20)}
		create := struct {
			login
			Role string `json:"role"`
		}{user, "read-write"}
		var created struct{}
		if err := c.call(ctx, "/api/users/create", admin, create, http.StatusCreated, &created); err != nil {
			return "", nil, fmt.Errorf("creating user %s: %w", user.Username, err)
		}
		if err := c.call(ctx, "/api/auth/login", "", user, http.StatusOK, &auth); err != nil {
			return "", nil, fmt.Errorf("login of %s: %w", user.Username, err)
		}
		tokens[i] = auth.Token
	}
	return admin, tokens, nil
}

// runConcurrently starts fn for workers 0..n-1 at the same moment and returns the
// time from that moment to the last worker's end. The first error cancels the others.
func runConcurrently(ctx context.Context, n int, fn func(ctx context.Context, worker int) error) (time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			if err := fn(ctx, i); err != nil {
				cancel(err)
			}
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	return time.Since(began), context.Cause(ctx)
}

// runPush has every client push its batches one after another, all clients at once,
// and checks that every record was accepted.
func runPush(ctx context.Context, c *client, tokens []string, plan pushPlan) (phaseStats, error) {
	latencies := make([][]time.Duration, len(plan.perClient))
	wall, err := runConcurrently(ctx, len(plan.perClient), func(ctx context.Context, w int) error {
		var buf bytes.Buffer
		for _, b := range plan.perClient[w] {
			began := time.Now()
			status, err := c.post(ctx, "/api/sync/push", tokens[w], b.body, &buf)
			if err != nil {
				return err
			}
			latencies[w] = append(latencies[w], time.Since(began))
			if status != http.StatusOK {
				return statusError("/api/sync/push", status, buf.Bytes())
			}
			var resp struct {
				SuccessCount  int               `json:"success_count"`
				FailedRecords []json.RawMessage `json:"failed_records"`
			}
			if err := json.Unmarshal(buf.Bytes(), &resp); err != nil {
				return fmt.Errorf("error decoding a push response: %w", err)
			}
			if resp.SuccessCount != b.records || len(resp.FailedRecords) > 0 {
				return fmt.Errorf("push of %d records: success_count %d, failed_records %s", b.records, resp.SuccessCount, resp.FailedRecords)
			}
		}
		return nil
	})
	if err != nil {
		return phaseStats{}, err
	}
	var records, batches int
	for _, bs := range plan.perClient {
		for _, b := range bs {
			records += b.records
			batches++
		}
	}
	return newPhaseStats(records, batches, wall, latencies), nil
}

// pullPage is what a client needs of a pull response.
type pullPage struct {
	Records []struct {
		ObservationID string `json:"observation_id"`
		Version       int64  `json:"version"`
	} `json:"records"`
	ChangeCutoff int64 `json:"change_cutoff"`
	HasMore      bool  `json:"has_more"`
}

// runPull has n clients each pull every observation from version 0, and checks that
// each received exactly want records in strictly increasing version order.
func runPull(ctx context.Context, c *client, tokens []string, n, limit, want int) (pullRound, error) {
	latencies := make([][]time.Duration, n)
	counts := make([]int, n)
	wall, err := runConcurrently(ctx, n, func(ctx context.Context, w int) error {
		got, lat, err := pullAll(ctx, c, tokens[w], fmt.Sprintf("synkbench-puller-%d", w), limit)
		latencies[w] = lat
		counts[w] = got
		if err == nil && got != want {
			err = fmt.Errorf("puller %d received %d records, %d were pushed", w, got, want)
		}
		return err
	})
	if err != nil {
		return pullRound{}, err
	}
	var records, pages int
	for w := range n {
		records += counts[w]
		pages += len(latencies[w])
	}
	return pullRound{phaseStats: newPhaseStats(records, pages, wall, latencies)}, nil
}

// pullAll follows the paging protocol from version 0 until has_more is false.
func pullAll(ctx context.Context, c *client, token, clientID string, limit int) (int, []time.Duration, error) {
	path := "/api/sync/pull?limit=" + strconv.Itoa(limit)
	var (
		buf       bytes.Buffer
		latencies []time.Duration
		since     int64
		last      int64
		count     int
	)
	for {
		body, err := json.Marshal(map[string]any{"client_id": clientID, "since": map[string]int64{"version": since}})
		if err != nil {
			return count, latencies, err
		}
		began := time.Now()
		status, err := c.post(ctx, path, token, body, &buf)
		if err != nil {
			return count, latencies, err
		}
		latencies = append(latencies, time.Since(began))
		if status != http.StatusOK {
			return count, latencies, statusError(path, status, buf.Bytes())
		}
		var page pullPage
		if err := json.Unmarshal(buf.Bytes(), &page); err != nil {
			return count, latencies, fmt.Errorf("error decoding a pull page: %w", err)
		}
		for _, r := range page.Records {
			if r.Version <= last {
				return count, latencies, fmt.Errorf("record %s has version %d after version %d", r.ObservationID, r.Version, last)
			}
			last = r.Version
		}
		count += len(page.Records)
		if !page.HasMore {
			return count, latencies, nil
		}
		if page.ChangeCutoff <= since {
			return count, latencies, fmt.Errorf("has_more with change_cutoff %d not after since %d", page.ChangeCutoff, since)
		}
		since = page.ChangeCutoff
	}
}
