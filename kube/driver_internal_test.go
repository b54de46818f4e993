package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/krsync/krsync/leaseapi"
)

func TestWantWorkers(t *testing.T) {
	tests := []struct {
		name            string
		pending, leased int64
		limit           int
		current, want   int32
	}{
		{"nothing yet: one worker waits", 0, 0, 4, 0, 1},
		{"one per partition", 2, 1, 4, 1, 3},
		{"capped", 50, 3, 4, 1, 4},
		{"never lowered", 0, 1, 4, 3, 3},
		{"limit 1", 9, 0, 1, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := leaseapi.Status{Partitions: leaseapi.PartitionCounts{Pending: tc.pending, Leased: tc.leased}}
			if got := wantWorkers(st, tc.limit, tc.current); got != tc.want {
				t.Errorf("wantWorkers = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestPinToNodeKeepsTemplateTerms(t *testing.T) {
	spec := podSpecWithTerms(2)
	pinToNode(&spec, "n1")
	terms := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 2 {
		t.Fatalf("%d terms, want the template's 2", len(terms))
	}
	for i, term := range terms {
		if len(term.MatchExpressions) != 1 || len(term.MatchFields) != 1 || term.MatchFields[0].Values[0] != "n1" {
			t.Errorf("term %d: %+v, want its own expression and the node pin", i, term)
		}
	}
	empty := podSpecWithTerms(0)
	pinToNode(&empty, "n2")
	if terms := empty.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms; len(terms) != 1 || terms[0].MatchFields[0].Values[0] != "n2" {
		t.Errorf("no template terms: got %+v, want one term pinning n2", terms)
	}
}

func podSpecWithTerms(n int) corev1.PodSpec {
	var terms []corev1.NodeSelectorTerm
	for range n {
		terms = append(terms, corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{
			Key: "disk", Operator: corev1.NodeSelectorOpIn, Values: []string{"ssd"},
		}}})
	}
	spec := corev1.PodSpec{}
	if n > 0 {
		spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
		}}
	}
	return spec
}
