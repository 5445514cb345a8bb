cwlVersion: v1.2
class: CommandLineTool
doc: A tool (not a workflow) with a file output.
baseCommand: echo
inputs:
  message: {type: string, inputBinding: {position: 1}}
stdout: out.txt
outputs:
  out: stdout
