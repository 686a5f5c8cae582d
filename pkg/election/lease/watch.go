package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

// watchTimeout asks the API server to end each watch after this long, so a
// connection that died silently is replaced at the latest then.
const watchTimeout = 5 * time.Minute

// stream lists the Lease and watches it from the list's resourceVersion,
// recording every state in the shared observation, and lists again when the
// server ends the watch or its resourceVersion has expired. listed is called
// after every successful list. It returns the first other error, or
// ctx.Err(). Both requests select the Lease by metadata.name, which lets RBAC
// limit list and watch to this one Lease with resourceNames.
func (l *Lock) stream(ctx context.Context, listed func()) error {
	return streamLease(ctx, l.leases, l.name, "Lease "+l.Describe(), l.duration, l.note, listed)
}

// streamLease lists the Lease called name and watches it from the list's
// resourceVersion, passing every state to note (nil and the list's
// resourceVersion when there is none, or when it is deleted), and lists again
// when the server ends the watch or its resourceVersion has expired; listed,
// if not nil, is called after every successful list. Each list is bounded by
// listTimeout; each watch asks the server to end it after watchTimeout. It
// returns the first other error, naming what, or ctx.Err().
func streamLease(ctx context.Context, leases coordinationv1client.LeaseInterface, name, what string,
	listTimeout time.Duration, note func(obj *coordinationv1.Lease, rv string), listed func()) error {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	for {
		rctx, cancel := context.WithTimeout(ctx, listTimeout)
		list, err := leases.List(rctx, metav1.ListOptions{FieldSelector: sel})
		cancel()
		if err != nil {
			return fmt.Errorf("listing %s: %w", what, err)
		}
		if len(list.Items) == 0 {
			note(nil, list.ResourceVersion)
		} else {
			note(&list.Items[0], list.Items[0].ResourceVersion)
		}
		if listed != nil {
			listed()
		}
		secs := int64(watchTimeout / time.Second)
		w, err := leases.Watch(ctx, metav1.ListOptions{
			FieldSelector:   sel,
			ResourceVersion: list.ResourceVersion,
			TimeoutSeconds:  &secs,
		})
		if err != nil {
			return fmt.Errorf("watching %s: %w", what, err)
		}
		err = consumeLeaseWatch(ctx, w, what, note)
		w.Stop()
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// consumeLeaseWatch passes the watch's events to note until it ends. It
// returns nil when the watch ended in a way that a fresh list repairs.
func consumeLeaseWatch(ctx context.Context, w watch.Interface, what string, note func(obj *coordinationv1.Lease, rv string)) error {
	for {
		var ev watch.Event
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok = <-w.ResultChan():
		}
		if !ok {
			return nil
		}
		switch ev.Type {
		case watch.Added, watch.Modified:
			if lease, isLease := ev.Object.(*coordinationv1.Lease); isLease {
				note(lease, lease.ResourceVersion)
			}
		case watch.Deleted:
			rv := ""
			if lease, isLease := ev.Object.(*coordinationv1.Lease); isLease {
				rv = lease.ResourceVersion
			}
			note(nil, rv)
		case watch.Error:
			err := apierrors.FromObject(ev.Object)
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				return nil
			}
			return fmt.Errorf("watching %s: %w", what, err)
		}
	}
}

// Watch calls fn with the holder as this follower judges it: at start, on
// every change, and when the holder's silence reaches its lease duration
// (then with an empty Holder). It returns the first error of the watch or
// of the read that confirms an expiry, or ctx.Err().
//
// A watch can hang without an error when the network drops packets; the
// confirming read, bounded by the lease duration, turns that into an error
// no later than one lease duration after the holder's last renewal.
func (l *Lock) Watch(ctx context.Context, fn func(Holder)) error {
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	// The first report waits for this watch's own list: what the Lock saw
	// earlier (its own last write, say) may be stale by now.
	listed := make(chan struct{})
	var once sync.Once
	go func() { errc <- l.stream(wctx, func() { once.Do(func() { close(listed) }) }) }()
	select {
	case <-listed:
	case <-ctx.Done():
		<-errc
		return ctx.Err()
	case err := <-errc:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}

	var (
		last     Holder
		reported bool
		timer    = time.NewTimer(time.Hour)
	)
	defer timer.Stop()
	for {
		o, changed := l.current()
		var expiry <-chan time.Time
		h, expires := l.judge(o, time.Now())
		if !reported || h != last {
			fn(h)
			last, reported = h, true
		}
		if !expires.IsZero() {
			timer.Reset(time.Until(expires))
			expiry = timer.C
		}
		select {
		case <-ctx.Done():
			<-errc
			return ctx.Err()
		case err := <-errc:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil || errors.Is(err, context.Canceled) {
				err = errors.New("watching the Lease: stopped")
			}
			return err
		case <-changed:
			timer.Stop()
		case <-expiry:
			// The holder looks silent: confirm with a fresh read before
			// reporting no leader, which also proves the server answers.
			if err := l.refresh(ctx); err != nil {
				stop()
				<-errc
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return err
			}
		}
	}
}
