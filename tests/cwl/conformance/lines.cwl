cwlVersion: v1.2
class: Workflow
doc: A file input from the job's folder, a scatter over an expression's output, a merge.
requirements:
  ScatterFeatureRequirement: {}
  InlineJavascriptRequirement: {}
inputs:
  text: File
outputs:
  numbered:
    type: string[]
    outputSource: number/numbered
steps:
  split:
    in: {text: text}
    out: [lines]
    run:
      class: ExpressionTool
      requirements:
        InlineJavascriptRequirement: {}
      inputs:
        text: {type: File, loadContents: true}
      outputs:
        lines: string[]
      expression: '${ return {"lines": inputs.text.contents.trim().split("\n")}; }'
  number:
    scatter: line
    in: {line: split/lines}
    out: [numbered]
    run:
      class: ExpressionTool
      inputs: {line: string}
      outputs: {numbered: string}
      expression: '${ return {"numbered": "> " + inputs.line}; }'
