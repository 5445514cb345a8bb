cwlVersion: v1.2
class: CommandLineTool
doc: Exits 1, so the run must fail.
baseCommand: ["false"]
inputs: []
outputs: []
