package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/isolationhq/terraform-provider-isolation/internal/api"
	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// The environments page with 1,000 environments in headless chromium,
// beside the API list call it makes, with the same session cookie: the
// page's time is from navigation start to the list laid out (the page's
// performance mark environments-rendered: HTML, script, whoami, projects,
// the list, 1,000 rows), of which rows-ms after the list's last answer
// (building and laying out the rows), and the wall time of
// navigate-to-rendered as the test sees it. Medians of b.N rounds; the page must render in under 1 s.
func BenchmarkEnvironmentsPage1000(b *testing.B) {
	const n = 1000
	br := newBrowser(b)
	srv := startServer(b, false)
	c := apiClient{tb: b, url: srv.URL(), token: srv.AdminToken()}
	var prj apiv1.Project
	c.do("POST", "/v1/projects", apiv1.ProjectCreate{Name: "bench"}, &prj)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				c.do("POST", "/v1/environments", apiv1.EnvironmentCreate{ProjectID: prj.ID, Name: fmt.Sprintf("env-%04d", i),
					Labels: map[string]string{"app": fmt.Sprintf("app-%d", i%10), "tier": "dev"}}, nil)
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(time.Minute)
	for {
		var page struct {
			Items []json.RawMessage `json:"items"`
		}
		c.do("GET", "/v1/environments?state=ready&limit=1000", nil, &page)
		if len(page.Items) == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d environments ready after a minute", len(page.Items), n)
		}
		time.Sleep(50 * time.Millisecond) // polling the API, bounded by the deadline
	}

	u := srv.URL()
	br.do("sign in", chromedp.Navigate(u+"/ui/sign-in"), chromedp.SendKeys(chromedp.CSS(`#token`), c.token),
		chromedp.Click(chromedp.CSS(`#sign-in button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"] #environments`)))
	cookies := get(br, "cookies", chromedp.Action[[]*network.Cookie](func(ctx context.Context, _ *chromedp.Target) ([]*network.Cookie, error) {
		res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
		return res.Cookies, err
	}))
	var session *http.Cookie
	for _, ck := range cookies {
		if ck.Name == api.SessionCookie {
			session = &http.Cookie{Name: ck.Name, Value: ck.Value} //nolint:gosec // G124: a cookie the test sends, not one it sets
		}
	}
	if session == nil {
		b.Fatal("no session cookie")
	}
	// listAPI is the page's list call: every page of limit=1000.
	listAPI := func() int {
		total, cursor := 0, ""
		for range 10 {
			req, _ := http.NewRequest("GET", u+"/v1/environments?limit=1000&cursor="+cursor, nil)
			req.AddCookie(session)
			req.Header.Set("Accept", "application/json")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			var page struct {
				Items      []json.RawMessage `json:"items"`
				NextCursor string            `json:"next_cursor"`
			}
			err = json.NewDecoder(res.Body).Decode(&page)
			res.Body.Close()
			if err != nil || res.StatusCode != http.StatusOK {
				b.Fatalf("list: %d %v", res.StatusCode, err)
			}
			total += len(page.Items)
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		return total
	}

	var apiMS, pageMS, wallMS, renderMS []float64
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if got := listAPI(); got != n {
			b.Fatalf("the list has %d environments, want %d", got, n)
		}
		apiMS = append(apiMS, ms(time.Since(t0)))

		t0 = time.Now()
		br.do("the environments page", chromedp.Navigate(u+"/ui/environments"),
			chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#environments[data-rendered="%d"]`, n))))
		wallMS = append(wallMS, ms(time.Since(t0)))
		mark := get(br, "the page's mark", chromedp.Evaluate[float64](
			`performance.getEntriesByName('environments-rendered')[0].startTime`))
		pageMS = append(pageMS, mark)
		// The browser's own timing of the list call: when its last answer
		// ended, and so how long the rows took after it.
		listEnd := get(br, "the list call's timing", chromedp.Evaluate[float64](
			`Math.max(...performance.getEntriesByType('resource').filter((e) => new URL(e.name).pathname === '/v1/environments').map((e) => e.responseEnd))`))
		renderMS = append(renderMS, mark-listEnd)
	}
	b.StopTimer()
	page, list, wall := median(pageMS), median(apiMS), median(wallMS)
	b.ReportMetric(page, "page-ms/median")
	b.ReportMetric(wall, "page-wall-ms/median")
	b.ReportMetric(list, "api-list-ms/median")
	b.ReportMetric(median(renderMS), "rows-ms/median")
	b.ReportMetric(page/list, "page/api")
	b.ReportMetric(0, "ns/op")
	if page >= 1000 {
		b.Errorf("the environments page with %d environments renders in %.0f ms (median), want under 1 s", n, page)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
