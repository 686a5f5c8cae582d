package redislock

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts, one file each; their headers document KEYS and ARGV.
var (
	//go:embed scripts/acquire.lua
	acquireLua string
	//go:embed scripts/renew.lua
	renewLua string
	//go:embed scripts/release.lua
	releaseLua string
	//go:embed scripts/raise.lua
	raiseLua string
	//go:embed scripts/read.lua
	readLua string
	//go:embed scripts/check.lua
	checkLua string
	//go:embed scripts/handoff.lua
	handoffLua string
	//go:embed scripts/reclaim.lua
	reclaimLua string
	//go:embed scripts/line.lua
	lineLua string
)

// scripts holds each script wrapped once, so its SHA is computed once and
// calls go out as EVALSHA (falling back to EVAL on a server that restarted
// with an empty script cache).
type scripts struct {
	acquire, renew, release, raise, read, check *redis.Script
	handoff, reclaim, line                      *redis.Script
}

func newScripts() scripts {
	return scripts{
		acquire: redis.NewScript(acquireLua),
		renew:   redis.NewScript(renewLua),
		release: redis.NewScript(releaseLua),
		raise:   redis.NewScript(raiseLua),
		read:    redis.NewScript(readLua),
		check:   redis.NewScript(checkLua),
		handoff: redis.NewScript(handoffLua),
		reclaim: redis.NewScript(reclaimLua),
		line:    redis.NewScript(lineLua),
	}
}
