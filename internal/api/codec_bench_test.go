package api

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
)

// rankingReply is a typical hot reply: a top 10 and the caller's
// neighbours, about 2 KB.
func rankingReply() *rallyev1.GetRankingResponse {
	r := &rallyev1.Ranking{}
	for i := range 20 {
		r.Entries = append(r.Entries, &rallyev1.RankingEntry{ParticipantId: fmt.Sprintf("01a234d0-6786-701e-9b84-%012d", i),
			DisplayName: "Camille Dubois", Rank: int64(i + 1), Position: int64(i + 1), Points: int64(10000 - 37*i)})
	}
	return &rallyev1.GetRankingResponse{Ranking: r}
}

// BenchmarkReplyEncoding compares what a unary reply costs to encode:
// connect alone (marshal), and the observer encoding it then the codec
// handing the bytes to connect (what the server does).
func BenchmarkReplyEncoding(b *testing.B) {
	codecs := newCodecSet()
	for _, name := range []string{codecProto, codecJSON} {
		c := codecs.byName[name]
		b.Run(name+"/connect", func(b *testing.B) {
			msg := rankingReply()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.MarshalAppend(nil, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/observer", func(b *testing.B) {
			msg := rankingReply()
			b.ReportAllocs()
			for b.Loop() {
				bytes, err := c.encode(msg)
				if err != nil {
					b.Fatal(err)
				}
				key := replyKey{name, proto.Message(msg)}
				codecs.replies.m.Store(key, bytes)
				if _, err := c.MarshalAppend(nil, msg); err != nil {
					b.Fatal(err)
				}
				codecs.forget(key)
			}
		})
	}
}
