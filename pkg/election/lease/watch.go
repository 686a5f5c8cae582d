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
	sel := fields.OneTermEqualSelector("metadata.name", l.name).String()
	for {
		rctx, cancel := context.WithTimeout(ctx, l.duration)
		list, err := l.leases.List(rctx, metav1.ListOptions{FieldSelector: sel})
		cancel()
		if err != nil {
			return fmt.Errorf("listing Lease %s: %w", l.Describe(), err)
		}
		if len(list.Items) == 0 {
			l.note(nil, list.ResourceVersion)
		} else {
			l.noteLease(&list.Items[0])
		}
		listed()
		secs := int64(watchTimeout / time.Second)
		w, err := l.leases.Watch(ctx, metav1.ListOptions{
			FieldSelector:   sel,
			ResourceVersion: list.ResourceVersion,
			TimeoutSeconds:  &secs,
		})
		if err != nil {
			return fmt.Errorf("watching Lease %s: %w", l.Describe(), err)
		}
		err = l.consume(ctx, w)
		w.Stop()
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// consume records the watch's events until it ends. It returns nil when the
// watch ended in a way that a fresh list repairs.
func (l *Lock) consume(ctx context.Context, w watch.Interface) error {
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
				l.noteLease(lease)
			}
		case watch.Deleted:
			rv := ""
			if lease, isLease := ev.Object.(*coordinationv1.Lease); isLease {
				rv = lease.ResourceVersion
			}
			l.note(nil, rv)
		case watch.Error:
			err := apierrors.FromObject(ev.Object)
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				return nil
			}
			return fmt.Errorf("watching Lease %s: %w", l.Describe(), err)
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
