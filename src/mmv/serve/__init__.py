"""`mmv serve`: an OpenAI-compatible chat API and a web chat page over one continuously batched model.

`protocol` reads and checks a request, `image_input` turns its image URLs into checked images, `prompt` renders
the conversation into token ids, `engine` decodes every request in one batch that requests join and leave step by
step, `app` is the HTTP layer (Starlette) and `server` runs it under uvicorn. The page lives in `static/`.
"""
