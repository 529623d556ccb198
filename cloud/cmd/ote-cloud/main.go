// Command ote-cloud is the OTE cluster controller for the levels above the
// boxes: it serves a tree of edge clusters to operators through kubectl and
// to its children through the QUIC tunnel.
package main

import (
	"github.com/ote-edge/ote/cloud/enrollment"
	"github.com/ote-edge/ote/cloud/serve"
	"github.com/ote-edge/ote/cloud/shard"
	"github.com/ote-edge/ote/cross/multicall"
)

func main() {
	(&multicall.Program{
		Name:    "ote-cloud",
		Summary: "the OTE cluster controller",
		Commands: []multicall.Command{
			{Name: "serve", Args: "--data-dir DIR | --kubeconfig FILE [--api-listen ADDR] [--kube-binary PATH]", Summary: "run the cluster controller", Run: serve.Main},
			{Name: "tunnel-shard", Summary: "hold a share of the children's tunnels for serve --tunnel-shards, which starts it", Run: shard.Main},
			{Name: "token", Args: "create [--tags k=v,...] [--ttl D] [--uses N] [--name-prefix P] [--enroll-yaml --server HOST:PORT] | list | revoke ID  --kubeconfig FILE", Summary: "manage enrollment tokens", Run: enrollment.Main},
		},
	}).Exit()
}
