package demo

import (
	"strings"
	"testing"
	"time"
)

func up(id, addr, leader string, isLeader bool, tok int64) view {
	return view{ID: id, Addr: addr, Up: true, St: status{Name: leader, Identity: id, IsLeader: isLeader, FencingToken: tok, Ready: true}}
}

func down(id, addr string) view { return view{ID: id, Addr: addr} }

func TestDescribe(t *testing.T) {
	tests := []struct {
		name  string
		views []view
		want  string
	}{
		{
			name: "one leader",
			views: []view{
				up("demo-1", "127.0.0.1:41235", "demo-2", false, 8),
				up("demo-2", "127.0.0.1:41236", "demo-2", true, 8),
				up("demo-3", "127.0.0.1:41237", "demo-2", false, 8),
			},
			want: "leader=demo-2 token=8   (demo-1 :41235 follower, demo-2 :41236 LEADER, demo-3 :41237 follower)",
		},
		{
			name: "killed leader still named by followers",
			views: []view{
				up("demo-1", "127.0.0.1:1", "demo-2", false, 9),
				down("demo-2", "127.0.0.1:2"),
			},
			want: "leader=none, key=demo-2 token=9 (gone; its lease has not expired yet)   (demo-1 :1 follower, demo-2 :2 down)",
		},
		{
			name: "resigned leader still answering, no successor yet",
			views: []view{
				up("demo-1", "127.0.0.1:1", "demo-1", false, 4),
				up("demo-2", "127.0.0.1:2", "demo-1", false, 4),
			},
			want: "leader=none, key=demo-1 token=4 (not claiming: confirming its key, or stepping down)   (demo-1 :1 follower, demo-2 :2 follower)",
		},
		{
			name: "no leader known",
			views: []view{
				{ID: "demo-1", Addr: "127.0.0.1:1", Up: true, St: status{Identity: "demo-1"}},
				down("demo-2", "127.0.0.1:2"),
			},
			want: "leader=none   (demo-1 :1 starting, demo-2 :2 down)",
		},
		{
			name: "followers disagree",
			views: []view{
				up("demo-1", "127.0.0.1:1", "demo-3", false, 4),
				up("demo-2", "127.0.0.1:2", "demo-1", false, 5),
			},
			want: "leader=none   (demo-1 :1 follower, demo-2 :2 follower)",
		},
		{
			name: "two claim leadership",
			views: []view{
				up("demo-1", "127.0.0.1:1", "demo-1", true, 4),
				up("demo-2", "127.0.0.1:2", "demo-2", true, 5),
			},
			want: "leader=demo-1,demo-2 token=4  !! 2 instances claim leadership   (demo-1 :1 LEADER, demo-2 :2 LEADER)",
		},
		{
			name:  "no token yet",
			views: []view{up("demo-1", "127.0.0.1:1", "demo-1", true, 0)},
			want:  "leader=demo-1 token=-   (demo-1 :1 LEADER)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describe(snapshot{Views: tt.views}); got != tt.want {
				t.Fatalf("\ngot  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestAgreedLeader(t *testing.T) {
	agreed := snapshot{Views: []view{
		up("a", "h:1", "b", false, 3),
		up("b", "h:2", "b", true, 3),
		down("c", "h:3"),
	}}
	if v, ok := agreed.agreedLeader(); !ok || v.ID != "b" {
		t.Fatalf("got %q, %v; want b", v.ID, ok)
	}
	lagging := snapshot{Views: []view{
		up("a", "h:1", "", false, 0),
		up("b", "h:2", "b", true, 3),
	}}
	if v, ok := lagging.agreedLeader(); ok {
		t.Fatalf("a follower that names no leader: got agreed leader %q", v.ID)
	}
	split := snapshot{Views: []view{
		up("a", "h:1", "a", true, 3),
		up("b", "h:2", "b", true, 4),
	}}
	if v, ok := split.agreedLeader(); ok {
		t.Fatalf("two claimants: got agreed leader %q", v.ID)
	}
}

func TestOtherLeader(t *testing.T) {
	s := snapshot{Views: []view{up("a", "h:1", "a", true, 3), up("b", "h:2", "a", false, 3)}}
	if _, ok := otherLeader(s, "a"); ok {
		t.Fatal("the old leader counted as a new one")
	}
	s.Views[1] = up("b", "h:2", "b", true, 4)
	if v, ok := otherLeader(s, "a"); !ok || v.ID != "b" {
		t.Fatalf("got %q, %v; want b", v.ID, ok)
	}
}

func TestTimelinePrintsOnlyChanges(t *testing.T) {
	var b strings.Builder
	start := time.Date(2026, 11, 23, 21, 0, 0, 0, time.UTC)
	tl := newTimeline(&b, start)
	one := snapshot{Start: start.Add(412 * time.Millisecond), Views: []view{up("demo-1", "h:1", "demo-1", true, 8)}}
	same := snapshot{Start: start.Add(500 * time.Millisecond), Views: one.Views}
	split := snapshot{Start: start.Add(1500 * time.Millisecond), Views: []view{
		up("demo-1", "h:1", "demo-1", true, 8),
		up("demo-2", "h:2", "demo-2", true, 9),
	}}
	tl.observe(one)
	tl.observe(same)
	tl.event(start.Add(time.Second), "SIGTERM %s (%s)", "demo-1", "graceful handover")
	tl.observe(split)
	tl.observe(split)

	want := "" +
		"+0.412s   leader=demo-1 token=8   (demo-1 :1 LEADER)\n" +
		"+1.000s   >>> SIGTERM demo-1 (graceful handover)\n" +
		"+1.500s   leader=demo-1,demo-2 token=8  !! 2 instances claim leadership   (demo-1 :1 LEADER, demo-2 :2 LEADER)\n"
	if got := b.String(); got != want {
		t.Fatalf("\ngot:\n%s\nwant:\n%s", got, want)
	}
	if got := tl.splitClaims(); got != 2 {
		t.Fatalf("split claims: got %d, want 2", got)
	}
}
