package provider

import (
	"context"
	"errors"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

func TestProjectCache_KeepsAnswersAboutTheProjectAndAsksAgainAfterAFailure(t *testing.T) {
	t.Parallel()
	pc := projectCache{checks: map[string]*projectCheck{}}
	calls := map[string]int{}
	answers := map[string][]error{
		"seen":    {nil, errors.New("asked twice")},
		"unseen":  {&client.Error{StatusCode: 404}, errors.New("asked twice")},
		"flaky":   {&client.Error{StatusCode: 503}, nil},
		"timeout": {context.DeadlineExceeded, &client.Error{StatusCode: 404}},
	}
	ask := func(id string) error {
		return pc.check(t.Context(), id, func(context.Context) error {
			err := answers[id][calls[id]]
			calls[id]++
			return err
		})
	}
	for range 3 {
		if err := ask("seen"); err != nil {
			t.Errorf("seen: %v, want nil every time from one GET", err)
		}
		if err := ask("unseen"); !client.IsNotFound(err) {
			t.Errorf("unseen: %v, want the first 404 every time", err)
		}
	}
	if err := ask("flaky"); client.StatusCode(err) != 503 {
		t.Errorf("flaky, first: %v, want the 503", err)
	}
	if err := ask("flaky"); err != nil {
		t.Errorf("flaky, second: %v, want the new answer: a 503 says nothing about the project", err)
	}
	if err := ask("timeout"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout, first: %v", err)
	}
	if err := ask("timeout"); !client.IsNotFound(err) {
		t.Errorf("timeout, second: %v, want the new answer", err)
	}
	for id, want := range map[string]int{"seen": 1, "unseen": 1, "flaky": 2, "timeout": 2} {
		if calls[id] != want {
			t.Errorf("%s: %d GETs, want %d", id, calls[id], want)
		}
	}
}
