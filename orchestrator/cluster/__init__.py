"""The cluster: N nodes on one PostgreSQL, each order's shard owned by one node at a time.

PostgreSQL decides who owns what and every write proves it (the fence); the nodes only
agree to follow it. ``leases`` is the SQL of members and leases, ``node`` the loop that
keeps this node's leases and acts on gaining and losing shards, ``placement`` which node
each shard should go to, ``forward`` the calls that carry a request to the shard's owner,
and ``signing`` the key those calls are signed with. docs/cluster.md tells the whole story.
"""
