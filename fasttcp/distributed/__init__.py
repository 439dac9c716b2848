"""Analysis of many and huge captures on a Dask distributed cluster, with exactly
the answer one process gives (`fasttcp.analyze`).

One pass over the data, in three steps (a module each):

1. index (`index`): each file is cut into record-aligned chunks by the C record
   scanner, all files at once;
2. split (`split`): each chunk's packets are split into K shards by the symmetric
   flow hash -- both directions of a connection in one shard -- and written as one
   piece file, a segment per shard;
3. reduce (`reduce`): each shard's tracker reads its segments of every chunk in
   capture order and finishes its connections' rows. Each segment carries the whole
   stream's clock (`clock`), so connections time out exactly when, and as, they do in
   one tracker, across chunk and file boundaries.

The shuffle goes through a shared directory, not worker memory. A piece file per
chunk, read by each reduce at its segments' offsets, means one task per chunk and one
per shard (chunks x shards pieces as Dask keys would be millions at scale), a reduce
holds one segment at a time (its memory: a segment plus its shard's live
connections, not its shard of the whole capture), and the pieces cost disk, not the
cluster's memory. Dask's fault tolerance holds: a split task that runs again writes
the same file (written aside and renamed); a reduce that runs again reads the files
again. The price: on several machines the directory must be shared (NFS, a parallel
file system); docs/distributed.md has the figures.

Dask is imported lazily: ``import fasttcp`` does not need it; without it, `analyze`
raises ImportError naming the extra (``pip install 'fasttcp[distributed]'``).
"""
from fasttcp.distributed.client import connect
from fasttcp.distributed.run import DEFAULT_CHUNK_BYTES, MAX_SHARDS, analyze

__all__ = ["analyze", "connect", "DEFAULT_CHUNK_BYTES", "MAX_SHARDS"]
