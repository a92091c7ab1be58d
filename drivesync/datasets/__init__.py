"""Dataset preparation: converters to YOLO, sharding, configs and checks.

Where things live (each module imports only modules listed above it; no cycles):

- ``names``: printable paths, ASCII-safe stems, manifest keys (pure).
- ``report``, ``imageinfo``, ``manifest``, ``lock``, ``workers``: the small pieces.
- ``items``: :class:`~.items.Item`, the one record every converter produces, and
  the helpers converters share. ``formats``: the format registry (``voc``,
  ``crowdhuman``, ``coco``, ``yolo`` each register a converter there).
- ``place``: one file op carried out (link, copy, move, write), never lossy.
- ``output``: an output folder opened (recovery, manifest, planner).
- ``shard``: the pure planner and the writer for converted items; ``pairs``:
  the YOLO fast path (validated and placed pair by pair, in workers).
- ``configs``, ``check``; ``options``: what a run is asked for (one object per step);
  ``prepare``: the pipelines the Python API and the CLI call.
"""
