package api

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"time"

	"buf.build/go/protovalidate"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/reward"
)

// rewardHandler serves rallyev1connect.RewardServiceHandler; its methods are
// split by concept over the reward*.go files.
type rewardHandler struct {
	svc       *reward.Service
	validator protovalidate.Validator
}

// seqToken encodes a wallet history cursor (a ledger sequence number).
func seqToken(seq int64) string {
	if seq == 0 {
		return ""
	}
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(seq))
	return base64.RawURLEncoding.EncodeToString(b)
}

func parseSeqToken(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 8 {
		return 0, rallye.Invalid("page_token", "is not a token returned by this list")
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

func (h *rewardHandler) GetWallet(ctx context.Context, req *rallyev1.GetWalletRequest) (*rallyev1.GetWalletResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	user, err := parseOptionalID("user_id", req.GetUserId())
	if err != nil {
		return nil, err
	}
	w, err := h.svc.Wallet(ctx, p, user, int(req.GetEntries()))
	if err != nil {
		return nil, err
	}
	return &rallyev1.GetWalletResponse{Wallet: walletToProto(w)}, nil
}

func (h *rewardHandler) ListWalletEntries(ctx context.Context, req *rallyev1.ListWalletEntriesRequest) (*rallyev1.ListWalletEntriesResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	user, err := parseOptionalID("user_id", req.GetUserId())
	if err != nil {
		return nil, err
	}
	cursor, err := parseSeqToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	w, err := h.svc.History(ctx, p, user, cursor, int(req.GetPageSize()))
	if err != nil {
		return nil, err
	}
	out := walletToProto(w)
	return &rallyev1.ListWalletEntriesResponse{Entries: out.Entries, NextPageToken: out.NextPageToken}, nil
}

func (h *rewardHandler) GrantPoints(ctx context.Context, req *rallyev1.GrantPointsRequest) (*rallyev1.GrantPointsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	user, err := parseID("user_id", req.GetUserId())
	if err != nil {
		return nil, err
	}
	b, err := h.svc.GrantPoints(ctx, p, reward.GrantRequest{UserID: user, Points: req.GetPoints(), Reason: req.GetReason(),
		RequestID: req.GetRequestId()})
	if err != nil {
		return nil, err
	}
	return &rallyev1.GrantPointsResponse{Balance: balanceToProto(b)}, nil
}

func (h *rewardHandler) GetRewardSettings(ctx context.Context, _ *rallyev1.GetRewardSettingsRequest) (*rallyev1.GetRewardSettingsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	st, err := h.svc.Settings(ctx, p)
	if err != nil {
		return nil, err
	}
	return &rallyev1.GetRewardSettingsResponse{Settings: settingsToProto(st)}, nil
}

func (h *rewardHandler) UpdateRewardSettings(ctx context.Context, req *rallyev1.UpdateRewardSettingsRequest) (*rallyev1.UpdateRewardSettingsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	mask := req.GetUpdateMask().GetPaths()
	if err := checkMasked(h.validator, req.GetSettings(), "settings", mask); err != nil {
		return nil, err
	}
	st, err := h.svc.UpdateSettings(ctx, p, reward.SettingsPatch{Settings: settingsFromProto(req.GetSettings()), Mask: mask})
	if err != nil {
		return nil, err
	}
	return &rallyev1.UpdateRewardSettingsResponse{Settings: settingsToProto(st)}, nil
}

func (h *rewardHandler) GetWorkCalendar(ctx context.Context, req *rallyev1.GetWorkCalendarRequest) (*rallyev1.GetWorkCalendarResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	c, err := h.svc.Calendar(ctx, p, int(req.GetYear()))
	if err != nil {
		return nil, err
	}
	days, year, hs := calendarToProto(c)
	return &rallyev1.GetWorkCalendarResponse{WeekendDays: days, Year: year, Holidays: hs}, nil
}

func (h *rewardHandler) SetWorkCalendar(ctx context.Context, req *rallyev1.SetWorkCalendarRequest) (*rallyev1.SetWorkCalendarResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	c := reward.Calendar{Year: int(req.GetYear()), Weekend: weekdaysFromProto(req.GetWeekendDays())}
	for i, hd := range req.GetHolidays() {
		d, err := parseDay(fieldIndex("holidays", i)+".date", hd.GetDate())
		if err != nil {
			return nil, err
		}
		c.Holidays = append(c.Holidays, reward.Holiday{Day: d, Name: hd.GetName()})
	}
	out, err := h.svc.SetCalendar(ctx, p, c)
	if err != nil {
		return nil, err
	}
	days, year, hs := calendarToProto(out)
	return &rallyev1.SetWorkCalendarResponse{WeekendDays: days, Year: year, Holidays: hs}, nil
}

// parseDay parses a YYYY-MM-DD date (the proto checked its shape).
func parseDay(field, s string) (time.Time, error) {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, rallye.Invalid(field, "is not a date (YYYY-MM-DD)")
	}
	return d, nil
}

func formatDay(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.DateOnly)
}
