cwlVersion: v1.2
class: Workflow
inputs: {x: string}
outputs: {y: {type: string, outputSource: nowhere/out}}
steps: {}
