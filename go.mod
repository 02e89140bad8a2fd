module github.com/gopeft/gopeft

go 1.26.8
