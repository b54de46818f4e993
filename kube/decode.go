package kube

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

// strictDecoder decodes YAML or JSON into client-go's typed objects and refuses unknown and
// duplicate fields.
func strictDecoder() runtime.Decoder {
	return serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
}

// Decode splits a multi-document YAML stream and decodes every document strictly into a
// typed object of client-go's scheme; an unknown kind or field is an error naming the document.
func Decode(data []byte) ([]runtime.Object, error) {
	dec := strictDecoder()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []runtime.Object
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		if gvk.Kind == "" {
			return nil, fmt.Errorf("document %d: no kind", n)
		}
		objs = append(objs, obj)
	}
}

// DecodeJob decodes one batch/v1 Job strictly (the worker template).
func DecodeJob(data []byte) (*batchv1.Job, error) {
	obj, gvk, err := strictDecoder().Decode(data, nil, nil)
	if err != nil {
		return nil, err
	}
	job, ok := obj.(*batchv1.Job)
	if !ok {
		return nil, fmt.Errorf("want a batch/v1 Job, got %s", gvk)
	}
	return job, nil
}

// stripComments drops YAML comment lines, to tell an empty document from a real one.
func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}
