#!/usr/bin/env cwl-runner
# Scatter, a conditional step, a subworkflow, InlineJavascript and ResourceRequirement,
# no Docker: each behaves as cwltool defines.
cwlVersion: v1.2
class: Workflow
requirements:
  ScatterFeatureRequirement: {}
  SubworkflowFeatureRequirement: {}
  InlineJavascriptRequirement: {}
  StepInputExpressionRequirement: {}
inputs:
  words: string[]
  shout: {type: boolean, default: false}
outputs:
  echoed:
    type: string[]
    outputSource: echo/text
  shouted:
    type: string?
    outputSource: upper/text
  joined:
    type: string
    outputSource: join/joined
steps:
  echo:
    scatter: word
    in: {word: words}
    out: [text]
    run:
      class: ExpressionTool
      inputs: {word: string}
      outputs: {text: string}
      expression: '${ return {"text": inputs.word + "!"}; }'
  upper:
    when: $(inputs.shout)
    in:
      shout: shout
      first:
        source: echo/text
        valueFrom: $(self[0])
    out: [text]
    run:
      class: ExpressionTool
      inputs: {shout: boolean, first: string}
      outputs: {text: string}
      expression: '${ return {"text": inputs.first.toUpperCase()}; }'
  join:
    in: {parts: echo/text}
    out: [joined]
    run:
      class: Workflow
      inputs:
        parts: string[]
      outputs:
        joined: {type: string, outputSource: concat/out}
      steps:
        concat:
          in: {parts: parts}
          out: [out]
          run:
            class: CommandLineTool
            requirements:
              ResourceRequirement: {coresMin: 2, ramMin: 256}
            baseCommand: echo
            arguments: [-n]
            inputs:
              parts: {type: 'string[]', inputBinding: {position: 1}}
            outputs:
              out:
                type: string
                outputBinding:
                  glob: out.txt
                  loadContents: true
                  outputEval: $(self[0].contents)
            stdout: out.txt
