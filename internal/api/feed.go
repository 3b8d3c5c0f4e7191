package api

import (
	"context"
	"fmt"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/rallye"
)

// feedHandler serves rallyev1connect.FeedServiceHandler.
type feedHandler struct {
	store *event.Store
}

var deadLetterStates = map[string]rallyev1.DeadLetterState{
	"dead":      rallyev1.DeadLetterState_DEAD_LETTER_STATE_DEAD,
	"retrying":  rallyev1.DeadLetterState_DEAD_LETTER_STATE_RETRYING,
	"retried":   rallyev1.DeadLetterState_DEAD_LETTER_STATE_RETRIED,
	"discarded": rallyev1.DeadLetterState_DEAD_LETTER_STATE_DISCARDED,
}

func (h *feedHandler) ListDeadLetters(ctx context.Context, req *rallyev1.ListDeadLettersRequest) (*rallyev1.ListDeadLettersResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	cursor, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := page.Size(req.GetPageSize())
	letters, err := h.store.DeadLetters(ctx, p, event.DeadLetterQuery{
		Consumer: req.GetConsumer(), Resolved: req.GetIncludeResolved(), Size: size, Cursor: cursor,
	})
	if err != nil {
		return nil, err
	}
	res := &rallyev1.ListDeadLettersResponse{}
	for _, d := range letters {
		// The consumer's error may name internals: it stays in the logs.
		reason := fmt.Sprintf("the %s consumer failed to apply this change %d times", d.Consumer, d.Attempts)
		if d.Follows != 0 {
			reason = fmt.Sprintf("waits behind change %d of the same event version", d.Follows)
		}
		res.DeadLetters = append(res.DeadLetters, &rallyev1.DeadLetter{
			Id: d.ID.String(), Consumer: d.Consumer, Seq: d.Seq, Sign: int32(d.Sign), State: deadLetterStates[d.State],
			FollowsSeq: d.Follows, Attempts: int32(d.Attempts), Reason: reason, FirstFailureTime: timestamp(d.FirstFailed),
			DeadTime: timestamp(d.Dead), ResolveTime: timestamp(d.Resolved), Event: eventToProto(d.Event),
		})
	}
	if len(letters) > 0 {
		res.NextPageToken = page.Next(letters[len(letters)-1].ID, len(letters), size)
	}
	return res, nil
}
