package controller

import (
	"context"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/ote-edge/ote/appliance/backoff"
)

// listWatch mirrors a resource until ctx ends: it lists it and hands the
// items to listed, then watches from the list's version and hands every
// change to changed. When the watch ends (an error event, an expired
// version, a closed stream) it lists again.
func listWatch(ctx context.Context, client dynamic.ResourceInterface, log *slog.Logger, what string,
	listed func([]unstructured.Unstructured), changed func(watch.EventType, *unstructured.Unstructured)) {
	for ctx.Err() == nil {
		list, err := client.List(ctx, metav1.ListOptions{})
		if err != nil {
			log.Warn("list "+what, "err", err)
			backoff.Sleep(ctx, time.Second)
			continue
		}
		listed(list.Items)
		w, err := client.Watch(ctx, metav1.ListOptions{ResourceVersion: list.GetResourceVersion()})
		if err != nil {
			log.Warn("watch "+what, "err", err)
			backoff.Sleep(ctx, time.Second)
			continue
		}
		for ev := range w.ResultChan() {
			obj, ok := ev.Object.(*unstructured.Unstructured)
			if !ok {
				break // an error event: list again
			}
			changed(ev.Type, obj)
		}
		w.Stop()
	}
}
