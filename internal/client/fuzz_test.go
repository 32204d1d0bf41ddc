package client

import (
	"encoding/json"
	"maps"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// FuzzLabelSelector parses arbitrary label filters as the server does. A
// filter it accepts holds only valid labels, and the query the client
// renders for those labels travels through a URL and parses back to the
// same labels, rendered the same way: the client and the server agree on
// the syntax.
func FuzzLabelSelector(f *testing.F) {
	for _, s := range []string{
		"team=payments,tier=dev", " team = payments , tier=dev ", "example.com/tier=", "a=b,a=b", "a=b,a=c",
		"team", "=x", "a=b,,c=d", "a=b=c", "k=" + strings.Repeat("v", 64), "x/y/z=1", "a=b&c=d", "a=b;c=d",
		strings.Repeat("k=v,", 16) + "k=v",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := apiv1.ParseLabelSelector(s)
		if err != nil {
			if sel != nil || !strings.HasPrefix(err.Error(), "label selector ") {
				t.Fatalf("ParseLabelSelector(%q) = %v, %q: want no labels and an error saying why", s, sel, err)
			}
			return
		}
		if fe := apiv1.ValidateLabels("labels", sel); fe != nil {
			t.Fatalf("ParseLabelSelector(%q) = %v, labels that do not validate: %+v", s, sel, fe)
		}
		if len(sel) > strings.Count(s, ",")+1 || len(sel) > apiv1.MaxLabelSelectorTerms {
			t.Fatalf("ParseLabelSelector(%q) = %v: more labels than terms, or than the limit", s, sel)
		}
		if len(sel) == 0 {
			return
		}
		rendered := ListOptions{Labels: sel}.query("")
		back, err := url.ParseQuery(rendered.Encode())
		if err != nil {
			t.Fatalf("query %q does not parse: %v", rendered.Encode(), err)
		}
		again, err := apiv1.ParseLabelSelector(back.Get("label"))
		if err != nil || !maps.Equal(sel, again) {
			t.Fatalf("%q parsed to %v, rendered as %q, parsed back to %v (%v)", s, sel, back.Get("label"), again, err)
		}
		if r2 := (ListOptions{Labels: again}).query("").Get("label"); r2 != rendered.Get("label") {
			t.Fatalf("rendering is not stable: %q then %q", rendered.Get("label"), r2)
		}
	})
}

// FuzzDecodeExecFrame reads arbitrary lines as an exec answer's: the fast
// path for output frames and encoding/json agree on every line, what they
// accept and what it holds.
func FuzzDecodeExecFrame(f *testing.F) {
	for _, s := range []string{
		`{"stream":"stdout","data":"aGVsbG8K"}`, `{"stream":"stderr","data":"aGk="}` + "\r\n",
		`{"stream":"stdout","data":"aGVsbG8K"} `, `{"stream":"stdout","data":"aGV\r\nsbG8K"}`,
		`{"stream":"stdout","data":""}`, `{"stream":"stdout","data":"QQ=="},"x":"y"}`, `{"stream":"stdout","data":"QQ"}`,
		`{"exit":{"exit_code":3,"reason":"exited"}}`, `{"stream":"stdout","data":"aGk=","exit":{"exit_code":0}}`, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var fast, slow apiv1.ExecFrame
		_, ferr := decodeExecFrame(line, &fast, nil)
		serr := json.Unmarshal(line, &slow)
		if (ferr == nil) != (serr == nil) {
			t.Fatalf("%q: decodeExecFrame says %v, json.Unmarshal %v", line, ferr, serr)
		}
		if ferr != nil {
			return
		}
		if len(fast.Data) == 0 {
			fast.Data = nil
		}
		if len(slow.Data) == 0 {
			slow.Data = nil
		}
		if diff := cmp.Diff(slow, fast); diff != "" {
			t.Fatalf("%q: decodeExecFrame and json.Unmarshal differ (-json +fast):\n%s", line, diff)
		}
	})
}
