"""`mmv serve`: an OpenAI-compatible chat API and a web chat page over one continuously batched model.

`protocol` reads and checks a request, `image_input` turns its image URLs into checked images, `prompt` renders
the conversation into token ids. `engine` decodes every request in one batch that requests join and leave step by
step: `sequence` is one request's side of it (sampling, streamed text, stop strings), `image_features` and
`prefix_pool` keep what a conversation's next turn reuses. `app` is the HTTP layer (Starlette), `responses` the
OpenAI reply shapes, and `server` runs it all under uvicorn. The page lives in `static/`.
"""
