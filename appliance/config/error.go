package config

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Error is a problem at one place in a configuration file.
type Error struct {
	File string
	Line int    // 0 when the file could not be read at all
	Key  string // dotted path, e.g. network.address; empty for syntax errors
	Msg  string
}

func (e *Error) Error() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	case e.Key == "":
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
}

// decodeStrict decodes data into v, rejecting unknown keys, and turns
// yaml's errors into an *Error with the file, line and key. root is the
// parsed document, used to name the key at a line.
func decodeStrict(file string, data []byte, v any) (*yaml.Node, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, nil, err)
	}
	if root.Kind == 0 { // empty file
		return &root, nil
	}
	if root.Kind == yaml.DocumentNode && root.Content[0].Kind != yaml.MappingNode {
		return nil, &Error{File: file, Line: root.Content[0].Line, Msg: "want a mapping of keys to values at the top level"}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return nil, yamlError(file, &root, err)
	}
	return &root, nil
}

var (
	lineRe    = regexp.MustCompile(`line (\d+): (.*)`)
	unknownRe = regexp.MustCompile(`field (\S+) not found in type`)
)

// yamlError converts the first of yaml's error messages into an *Error.
func yamlError(file string, root *yaml.Node, err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	m := lineRe.FindStringSubmatch(msg)
	if m == nil {
		return &Error{File: file, Msg: msg}
	}
	line, _ := strconv.Atoi(m[1])
	e := &Error{File: file, Line: line, Msg: m[2]}
	if root != nil {
		e.Key = keyAtLine(root, line, "")
	}
	if u := unknownRe.FindStringSubmatch(m[2]); u != nil {
		e.Msg = "unknown key " + strconv.Quote(u[1])
	} else if te != nil {
		e.Msg = "wrong type: " + m[2]
	}
	return e
}

// keyAtLine finds the dotted key whose key or value starts at line.
func keyAtLine(n *yaml.Node, line int, path string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if k := keyAtLine(c, line, path); k != "" {
				return k
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			p := key.Value
			if path != "" {
				p = path + "." + key.Value
			}
			if k := keyAtLine(val, line, p); k != "" {
				return k
			}
			if key.Line == line || val.Line == line {
				return p
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if k := keyAtLine(c, line, p); k != "" {
				return k
			}
			if c.Line == line {
				return p
			}
		}
	}
	return ""
}

// lineOf returns the line of the value at the dotted key path, or of the
// nearest ancestor present in the document.
func lineOf(root *yaml.Node, path ...string) int {
	n := root
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			break
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				n, line, found = n.Content[i+1], n.Content[i].Line, true
				break
			}
		}
		if !found {
			break
		}
	}
	return line
}
