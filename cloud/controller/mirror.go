package controller

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/ote-edge/ote/appliance/backoff"
)

// listWatch mirrors a resource until ctx ends: it lists it and hands the
// items to listed, then watches from the list's version and hands every
// change to changed.
//
// A watch that ends (the API server closes every watch after a while) is
// resumed from the last version seen, which bookmarks keep recent; only a
// version the API server no longer has (410 Gone) makes it list again:
// a list of a level's EdgeClusters is its whole subtree, one object for
// every cluster below it, in one response. A list after the first is
// never older than what was already seen (resourceVersionMatch
// NotOlderThan), so that it cannot drop an object that a newer version
// still has; it is served from the API server's watch cache when it holds
// that version.
func listWatch(ctx context.Context, client dynamic.ResourceInterface, log *slog.Logger, what string,
	listed func([]unstructured.Unstructured), changed func(watch.EventType, *unstructured.Unstructured)) {
	rv := "0" // any version for the first list, from the cache
	for ctx.Err() == nil {
		start := time.Now()
		list, err := client.List(ctx, metav1.ListOptions{
			ResourceVersion: rv, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
		})
		if err != nil {
			log.Warn("list "+what, "err", err)
			backoff.Sleep(ctx, time.Second)
			continue
		}
		listed(list.Items)
		rv = list.GetResourceVersion()
		log.Info("listed "+what, "items", len(list.Items), "version", rv, "took", time.Since(start).Round(time.Millisecond))
		for ctx.Err() == nil {
			next, err := watchFrom(ctx, client, rv, changed)
			if gone(err) {
				log.Info("watch "+what+": version expired, listing again", "version", next)
				break
			}
			if err != nil && ctx.Err() == nil {
				log.Warn("watch "+what, "err", err)
			}
			if next == rv { // nothing came: do not spin on a failing watch
				backoff.Sleep(ctx, time.Second)
			}
			rv = next
		}
	}
}

// watchFrom watches from version rv until the watch ends, handing every
// change to changed. It returns the last version seen, and the error that
// ended the watch, if any.
func watchFrom(ctx context.Context, client dynamic.ResourceInterface, rv string,
	changed func(watch.EventType, *unstructured.Unstructured)) (string, error) {
	w, err := client.Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
	if err != nil {
		return rv, err
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if ev.Type == watch.Error {
			return rv, apierrors.FromObject(ev.Object)
		}
		obj, ok := ev.Object.(*unstructured.Unstructured)
		if !ok {
			return rv, fmt.Errorf("watch event of type %T", ev.Object)
		}
		rv = obj.GetResourceVersion()
		if ev.Type != watch.Bookmark {
			changed(ev.Type, obj)
		}
	}
	return rv, nil
}

// gone reports whether err says a resource version is no longer kept.
func gone(err error) bool {
	return apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}
