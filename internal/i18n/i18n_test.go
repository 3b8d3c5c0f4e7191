package i18n_test

import (
	"fmt"
	"strings"

	"github.com/rallyehq/rallye/internal/i18n"
)

// show makes French typography's spaces visible: narrow no-break "⍽",
// no-break "·".
func show(s string) string {
	return strings.NewReplacer(i18n.NNBSP, "⍽", i18n.NBSP, "·").Replace(s)
}

func Example() {
	for _, l := range []string{i18n.FR, i18n.EN} {
		fmt.Println(show(i18n.Points(1, false, l)), "|", show(i18n.Points(1500, true, l)), "|", show(i18n.Points(-40, false, l)),
			"|", i18n.Ordinal(1, l), i18n.Ordinal(2, l), i18n.Ordinal(11, l), i18n.Ordinal(23, l),
			"|", show(i18n.Quote("Quiz produit", l)), "|", show(i18n.Colon("2e", l)),
			"|", show(i18n.Money(125050, "EUR", l)), "|", i18n.And([]string{"a", "b", "c"}, l))
	}
	// Output:
	// 1 point | +1⍽500 points | −40 points | 1er 2e 11e 23e | «⍽Quiz produit⍽» | 2e·: | 1⍽250,50·EUR | a, b et c
	// 1 point | +1,500 points | −40 points | 1st 2nd 11th 23rd | 'Quiz produit' | 2e: | 1,250.50·EUR | a, b and c
}
