package nn

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// notOps are exported functions that take and return tensors but are not
// differentiable operations of their own: constructors, and checked
// variants whose unchecked twin is in the gradient table.
var notOps = map[string]bool{
	"New": true, "FromHost": true, "Zeros": true, "Ones": true, "Full": true, "Scalar": true,
	"ZerosLike": true, "FromBuffer": true, "Uniform": true, "Normal": true,
	"EmbeddingOpChecked": true, "CrossEntropyChecked": true,
	"Detach": true, "Grad": true, "SetRequiresGrad": true,
}

// TestEveryOpIsGradChecked fails when an exported function or method that
// maps tensors to a tensor is missing from the gradient-check table.
func TestEveryOpIsGradChecked(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	table, err := os.ReadFile("gradcheck_test.go")
	if err != nil {
		t.Fatal(err)
	}
	isTensor := func(e ast.Expr) bool {
		if el, ok := e.(*ast.Ellipsis); ok {
			e = el.Elt
		}
		st, ok := e.(*ast.StarExpr)
		if !ok {
			return false
		}
		id, ok := st.X.(*ast.Ident)
		return ok && id.Name == "Tensor"
	}
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || !fn.Name.IsExported() || notOps[fn.Name.Name] || fn.Type.Results == nil {
				continue
			}
			if fn.Recv != nil && !isTensor(fn.Recv.List[0].Type) {
				continue
			}
			returnsTensor := false
			for _, r := range fn.Type.Results.List {
				returnsTensor = returnsTensor || isTensor(r.Type)
			}
			takesTensor := fn.Recv != nil
			for _, p := range fn.Type.Params.List {
				takesTensor = takesTensor || isTensor(p.Type)
			}
			if !returnsTensor || !takesTensor {
				continue
			}
			checked++
			pat := `\b` + fn.Name.Name + `\b`
			if fn.Recv != nil {
				pat = `\.` + fn.Name.Name + `\(`
			}
			if !regexp.MustCompile(pat).Match(table) {
				t.Errorf("%s: %s is not in the gradient-check table", fset.Position(fn.Pos()), fn.Name.Name)
			}
		}
	}
	if checked < 50 {
		t.Fatalf("only %d operations found; the scan is broken", checked)
	}
}
