"""A Nimbus worker in Python: answers every request with a greeting.

Built with componentize-py against Nimbus's WIT world (`wit/`):
    componentize-py -d ../../wit -w nimbus:worker/worker componentize app -o python-hello.wasm
"""

from wit_world import exports
from wit_world.imports.wasi_http_types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)
from componentize_py_types import Ok


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        body = b"Hello from Nimbus, in Python!\n"
        headers = Fields.from_list(
            [
                ("content-type", b"text/plain; charset=utf-8"),
                ("content-length", str(len(body)).encode()),
            ]
        )
        response = OutgoingResponse(headers)
        response.set_status_code(200)
        outgoing = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        stream = outgoing.write()
        stream.blocking_write_and_flush(body)
        stream.__exit__(None, None, None)
        OutgoingBody.finish(outgoing, None)
