// Package i18n writes the small pieces of user-facing text that several
// areas share, in French and English: numbers grouped by thousands, points
// with their plural, ordinals, quotations and amounts of money, with the
// spaces French typography wants (narrow no-break spaces in numbers and
// inside guillemets, a no-break space before a colon).
//
// Shared ground: it imports no domain.
package i18n

import (
	"strconv"
	"strings"
)

// Locale codes Rallye speaks.
const (
	FR = "fr"
	EN = "en"
)

// Typographic spaces.
const (
	// NNBSP is the narrow no-break space: thousands, « guillemets », before
	// ; ! ?.
	NNBSP = "\u202f"
	// NBSP is the no-break space: before a colon, between an amount and
	// its currency.
	NBSP = "\u00a0"
)

// Normalize returns "en" for English and "fr" for anything else (French is
// the default language of the product).
func Normalize(locale string) string {
	if strings.HasPrefix(strings.ToLower(locale), EN) {
		return EN
	}
	return FR
}

// Number writes an integer grouped by thousands: 1,500 in English, 1 500
// (narrow no-break space) in French.
func Number(n int64, locale string) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	sep := ","
	if Normalize(locale) == FR {
		sep = NNBSP
	}
	var b strings.Builder
	if neg {
		b.WriteString("-")
	}
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString(sep)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Points writes a number of points with its plural: "1 point", "300
// points", "1 500 points". signed adds "+" to positive amounts (a minus sign
// is always written, as "−", U+2212).
func Points(n int64, signed bool, locale string) string {
	abs := n
	if abs < 0 {
		abs = -abs
	}
	s := Number(abs, locale)
	unit := " points"
	// French uses the singular for 0 and 1; English for 1 only.
	if abs == 1 || abs == 0 && Normalize(locale) == FR {
		unit = " point"
	}
	switch {
	case n < 0:
		s = "−" + s
	case signed && n > 0:
		s = "+" + s
	}
	return s + unit
}

// Signed writes a signed amount without unit: "+40", "−40".
func Signed(n int64, locale string) string {
	switch {
	case n < 0:
		return "−" + Number(-n, locale)
	case n > 0:
		return "+" + Number(n, locale)
	}
	return "0"
}

// Ordinal writes a rank: 1st, 2nd, 3rd, 11th, 21st; 1er, 2e in French.
func Ordinal(n int, locale string) string {
	s := strconv.Itoa(n)
	if Normalize(locale) == FR {
		if n == 1 {
			return "1er"
		}
		return s + "e"
	}
	switch {
	case n%100 >= 11 && n%100 <= 13:
		return s + "th"
	case n%10 == 1:
		return s + "st"
	case n%10 == 2:
		return s + "nd"
	case n%10 == 3:
		return s + "rd"
	}
	return s + "th"
}

// Quote quotes a name: 'Quiz produit' in English, « Quiz produit » in
// French.
func Quote(s, locale string) string {
	if Normalize(locale) == FR {
		return "«" + NNBSP + s + NNBSP + "»"
	}
	return "'" + s + "'"
}

// Colon writes a label followed by a colon: "2nd:" and "2e :" (no-break
// space).
func Colon(s, locale string) string {
	if Normalize(locale) == FR {
		return s + NBSP + ":"
	}
	return s + ":"
}

// Money writes an amount in minor units (cents) with its currency code:
// "€1,500" style is avoided; "1,500 EUR" in English, "1 500 EUR" in French,
// with cents only when there are some ("12.50 EUR", "12,50 EUR").
func Money(minor int64, currency, locale string) string {
	neg := minor < 0
	if neg {
		minor = -minor
	}
	s := Number(minor/100, locale)
	if c := minor % 100; c != 0 {
		dec := "."
		if Normalize(locale) == FR {
			dec = ","
		}
		s += dec + strconv.FormatInt(c/10, 10) + strconv.FormatInt(c%10, 10)
	}
	if neg {
		s = "−" + s
	}
	return s + NBSP + currency
}

// And joins parts: "a, b and c" / "a, b et c".
func And(parts []string, locale string) string {
	and := " and "
	if Normalize(locale) == FR {
		and = " et "
	}
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + and + parts[len(parts)-1]
}
