"""``recal serve``: the OpenAI-compatible proxy in front of an exported scorer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from recal.cli.common import (
    ApiKeyOpt,
    ConcurrencyOpt,
    MaxPromptTokensOpt,
    ServedModelOpt,
    SignKeyEnvOpt,
    reported,
)

__all__ = ["serve"]

def _warn(message: str) -> None:
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


def serve(
    scorer: Annotated[Path, typer.Option(help="An exported scorer folder (read once, at start).")]
        = Path("scorer"),
    model: Annotated[str | None, typer.Option(
        "--model", "--upstream",
        help="The upstream: a server URL (http://HOST:PORT/v1) or any --model of recal sample "
             "(default: the model the scorer was fitted on).")] = None,
    served_model: ServedModelOpt = None, api_key: ApiKeyOpt = None,
    concurrency: ConcurrencyOpt = 8, max_prompt_tokens: MaxPromptTokensOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    proxy_key: Annotated[str | None, typer.Option(
        help="API key clients must send (Authorization: Bearer); default $RECAL_PROXY_KEY; "
             "none: no key asked.")] = None,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Largest request body.")] = 65536,
    max_messages: Annotated[int, typer.Option(min=1, help="Most messages per request.")] = 64,
    max_n: Annotated[int, typer.Option(min=1, help="Most choices (n) per request.")] = 4,
    max_tokens: Annotated[int, typer.Option(min=1, help="Largest max_tokens.")] = 512,
    request_timeout: Annotated[float, typer.Option(help="Seconds per request in all.")] = 120.0,
    max_concurrent: Annotated[int, typer.Option(min=1, help="Requests worked on at once.")] = 4,
    allow_model_mismatch: Annotated[bool, typer.Option(
        help="Serve although the upstream is not the model the scorer was fitted on.")] = False,
    abstain: Annotated[str, typer.Option(
        help="Answers below the scorer's abstention threshold (chosen at export for a target "
             "error rate among answered questions): off, flag (marked in the response's recal "
             "field) or refuse (withheld, replaced by a refusal).")] = "off",
    insecure_no_key: Annotated[bool, typer.Option(
        help="Serve a non-loopback --host with no proxy key (anyone reaching it is served).")]
        = False,
    sign_key_env: SignKeyEnvOpt = None,
) -> None:
    """An OpenAI-compatible proxy that adds the calibrated confidence to each answer."""
    from recal.flows import confidence_service

    with reported():
        from recal.scorer_format import signing_key
        from recal.serve import ServeConfig
        from recal.serve.app import abstention_rule, check_listen, run_server

        key = proxy_key or os.environ.get("RECAL_PROXY_KEY") or None
        check_listen(host, key, insecure_no_key=insecure_no_key)  # before anything loads
        service = confidence_service(scorer, upstream=model, served_model=served_model,
                                     api_key=api_key, concurrency=concurrency,
                                     allow_model_mismatch=allow_model_mismatch, warn=_warn,
                                     max_prompt_tokens=max_prompt_tokens,
                                     signing_key=signing_key(sign_key_env))
        config = ServeConfig(api_key=key,
                             max_body_bytes=max_body_bytes, max_messages=max_messages,
                             max_n=max_n, max_tokens=max_tokens,
                             request_timeout=request_timeout, max_concurrent=max_concurrent,
                             abstain=abstain)  # type: ignore[arg-type]
        abstention_rule(service, config)  # a scorer without a threshold is refused here
    if config.api_key is None and insecure_no_key:
        _warn(f"serving on {host} with no API key (--insecure-no-key)")
    typer.echo(f"recal serve: {service.served_model} on http://{host}:{port}/v1 "
               f"(scorer {scorer}, M = {service.sampling.n_samples})", err=True)
    run_server(service, config, host=host, port=port)
