#!/usr/bin/env cwl-runner
# One long Docker step, for stopping a run.
cwlVersion: v1.2
class: Workflow
requirements:
  DockerRequirement:
    dockerPull: appliance-test/busybox:latest
inputs:
  seconds: int
outputs: []
steps:
  nap:
    in: {seconds: seconds}
    out: []
    run:
      class: CommandLineTool
      baseCommand: sleep
      inputs:
        seconds: {type: int, inputBinding: {position: 1}}
      outputs: []
