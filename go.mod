module github.com/ote-edge/ote

go 1.26.0
