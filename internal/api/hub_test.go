package api

import "testing"

func TestHub_WakesEveryWaiterOfAnIDOnce(t *testing.T) {
	h := newHub()
	a, b := h.Changed("x"), h.Changed("x")
	other := h.Changed("y")
	h.Notify("x")
	for _, ch := range []<-chan struct{}{a, b} {
		select {
		case <-ch:
		default:
			t.Fatal("a waiter was not woken")
		}
	}
	select {
	case <-other:
		t.Fatal("a waiter of another id was woken")
	default:
	}
	select {
	case <-h.Changed("x"):
		t.Fatal("a new wait saw the old change")
	default:
	}
}
