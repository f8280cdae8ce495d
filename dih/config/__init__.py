"""The configuration: composing a run in-process the way Hydra does, the schema and its rules (one
sentence per bad setting), and the sweep file format. Imports no torch, so a bad setting is answered fast."""
