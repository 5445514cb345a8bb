#!/usr/bin/env cwl-runner
# Three Docker steps: write a greeting, upper-case it, count its characters.
cwlVersion: v1.2
class: Workflow
requirements:
  DockerRequirement:
    dockerPull: appliance-test/busybox:latest
inputs:
  name: string
outputs:
  shouted:
    type: File
    outputSource: shout/out
  length:
    type: File
    outputSource: count/out
steps:
  greet:
    in: {name: name}
    out: [out]
    run:
      class: CommandLineTool
      baseCommand: [sh, -c]
      arguments: ['echo "hello $0" > greeting.txt', $(inputs.name)]
      inputs: {name: string}
      outputs:
        out: {type: File, outputBinding: {glob: greeting.txt}}
  shout:
    in: {text: greet/out}
    out: [out]
    run:
      class: CommandLineTool
      baseCommand: [tr, a-z, A-Z]
      stdin: $(inputs.text.path)
      stdout: upper.txt
      inputs: {text: File}
      outputs:
        out: {type: stdout}
  count:
    in: {text: shout/out}
    out: [out]
    run:
      class: CommandLineTool
      baseCommand: [wc, -c]
      stdin: $(inputs.text.path)
      stdout: count.txt
      inputs: {text: File}
      outputs:
        out: {type: stdout}
