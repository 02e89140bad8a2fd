package nn

import "fmt"

func fmtShapes(a, b []int) string { return fmt.Sprintf("/%v%v", a, b) }
func fmtBools(a, b bool) string   { return fmt.Sprintf("/%v-%v", a, b) }
func fmtAxis(ax int, keep bool) string {
	return fmt.Sprintf("/axis%d-keep%v", ax, keep)
}
