#!/usr/bin/env cwl-runner
# The example of `cwl-airflow init`: two steps, no container needed.
cwlVersion: v1.2
class: Workflow
doc: Writes a greeting, then counts its words.
inputs:
  name: {type: string, default: World}
outputs:
  greeting: {type: File, outputSource: greet/out}
  words: {type: File, outputSource: count/out}
steps:
  greet:
    in: {name: name}
    out: [out]
    run:
      class: CommandLineTool
      baseCommand: echo
      arguments: [Hello, $(inputs.name)]
      inputs: {name: string}
      stdout: greeting.txt
      outputs: {out: stdout}
  count:
    in: {text: greet/out}
    out: [out]
    run:
      class: CommandLineTool
      baseCommand: [wc, -w]
      stdin: $(inputs.text.path)
      inputs: {text: File}
      stdout: words.txt
      outputs: {out: stdout}
