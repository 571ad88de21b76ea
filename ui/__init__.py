"""The app's Gradio parts, one module per tab (explain_tab: a modality's tab; compare_tab, playground_tab,
models_tab), what they share (serving: checkpoints, requests, named endpoints) and the input widgets (inputs).
app.py assembles them. Imports flow one way: app -> ui -> viz, daam."""
