package runstore

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestKeys(t *testing.T) {
	t.Parallel()
	k := NewKeys("app")
	tests := []struct {
		got, want string
	}{
		{k.Seq(), "sando:{app}:seq"},
		{k.Runs(), "sando:{app}:runs"},
		{k.Building(), "sando:{app}:building"},
		{k.Run(17), "sando:{app}:run:17"},
		{k.RunPrefix() + "17", k.Run(17)},
		{k.LastPassed(), "sando:{app}:last_passed"},
		{k.TierGates("host", "0.10.2"), "sando:{app}:gates:host:0.10.2"},
		{k.Idempotency("abc"), "sando:{app}:idem:abc"},
		{k.Events(), "sando:{_fleet}:events"},
		{k.Outbox(), "sando:{app}:outbox"},
		{k.Log(17, "gate-unit"), "sando:{app}:log:17:gate-unit"},
		{k.Logs(17), "sando:{app}:logs:17"},
		{k.CacheGeneration(), "sando:{app}:cache_gen"},
		{k.ReuseIndex(), "sando:{app}:reuse"},
		{k.ReusedBy(), "sando:{app}:reused_by"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, tt.got)
	}
	var f FleetKeys
	require.Equal(t, "sando:{_fleet}:seq", f.Seq())
	require.Equal(t, "sando:{_fleet}:run_pipeline", f.RunPipeline())
	require.Equal(t, "sando:{_fleet}:pipelines", f.Pipelines())
	require.Equal(t, redisSlot(f.Seq()), redisSlot(f.RunPipeline()), "the allocate script's keys share a slot")
	require.Equal(t, redisSlot(f.Seq()), redisSlot(f.Pipelines()), "the allocate script's keys share a slot")
}

// Every key of a pipeline must hash to one cluster slot, or scripts that
// touch several of them fail on Redis Cluster with CROSSSLOT.
func TestKeysShareSlot(t *testing.T) {
	t.Parallel()
	k := NewKeys("app")
	all := []string{k.Seq(), k.Runs(), k.Building(), k.Run(1), k.Run(99999), k.LastPassed(),
		k.TierGates("host", "1.0"), k.Idempotency("x"), k.Outbox(), k.Log(1, "fetch"), k.Logs(1),
		k.CacheGeneration(), k.ReuseIndex(), k.ReusedBy()} // Events is a channel, not a key
	slot := redisSlot(all[0])
	for _, key := range all[1:] {
		require.Equal(t, slot, redisSlot(key), key)
	}
	require.NotEqual(t, redisSlot(NewKeys("a").Seq()), redisSlot(NewKeys("b").Seq()),
		"different pipelines should spread over slots")
}

// redisSlot is Redis Cluster's key → slot function (CRC16 of the hash tag).
func redisSlot(key string) int {
	s := key
	if i := indexByte(key, '{'); i >= 0 {
		if j := indexByte(key[i+1:], '}'); j > 0 {
			s = key[i+1 : i+1+j]
		}
	}
	return int(crc16(s) % 16384)
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
