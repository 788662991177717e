"""Retries per step: a transient model error is retried inside its step; permanent errors are not."""

from __future__ import annotations

import pytest
from pydantic import PydanticUserError
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelHTTPError, UnexpectedModelBehavior, UsageLimitExceeded, UserError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable import Workflow
from durable.backoff import constant
from durable_pydantic_ai import DurableAgent, TaskConfig, default_non_retryable


class FlakyModel:
    def __init__(self, failures: dict[int, Exception]) -> None:
        self.failures = failures
        self.attempts = 0
        self.charged = 0

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.attempts += 1
        error = self.failures.pop(self.attempts, None)
        if error is not None:
            raise error
        self.charged += 1
        done = sum(isinstance(m, ModelResponse) for m in messages)
        if done == 0:
            return ModelResponse(parts=[ToolCallPart("charge", {"amount": 5}, tool_call_id="pay")])
        return ModelResponse(parts=[TextPart("paid")])


def _agent(model: FlakyModel, charges: list[int], name: str = "billing") -> Agent[None, str]:
    agent = Agent(FunctionModel(model), name=name)

    @agent.tool_plain
    async def charge(amount: int) -> str:
        charges.append(amount)
        return "charged"

    return agent


async def test_transient_model_error_is_retried_inside_its_step(wf: Workflow, run_prefix: str) -> None:
    # The second request (after the tool call) fails once with a 503.
    model = FlakyModel({2: ModelHTTPError(503, "test-model", "unavailable")})
    charges: list[int] = []
    durable = DurableAgent(
        _agent(model, charges), wf, model_task_config=TaskConfig(retries=3, backoff=constant(0))
    )
    result = await durable.run("pay", run_id=f"{run_prefix}-503")

    assert result.output == "paid"
    assert model.attempts == 3 and model.charged == 2
    assert charges == [5], "the tool must not run again because a later request failed"
    steps = await wf.get_steps(f"{run_prefix}-503")
    keys = [s.key for s in steps]
    assert len(keys) == len(set(keys)) == 3, keys
    attempts = {s.key: s.attempts for s in steps}
    assert attempts["billing__model.request#1"] == 2
    assert attempts["billing__model.request"] == 1


@pytest.mark.parametrize("status", [400, 401, 422])
async def test_rejected_request_is_not_retried(wf: Workflow, run_prefix: str, status: int) -> None:
    model = FlakyModel({1: ModelHTTPError(status, "test-model", "bad request")})
    durable = DurableAgent(
        _agent(model, []), wf, model_task_config=TaskConfig(retries=5, backoff=constant(0))
    )
    with pytest.raises(ModelHTTPError) as info:
        await durable.run("pay", run_id=f"{run_prefix}-{status}")
    assert info.value.status_code == status
    assert model.attempts == 1


async def test_quota_error_is_not_retried(wf: Workflow, run_prefix: str) -> None:
    error = ModelHTTPError(429, "test-model", {"error": {"code": "insufficient_quota"}})
    model = FlakyModel({1: error})
    durable = DurableAgent(
        _agent(model, []), wf, model_task_config=TaskConfig(retries=5, backoff=constant(0))
    )
    with pytest.raises(ModelHTTPError):
        await durable.run("pay", run_id=f"{run_prefix}-quota")
    assert model.attempts == 1


async def test_rate_limit_is_retried(wf: Workflow, run_prefix: str) -> None:
    model = FlakyModel({1: ModelHTTPError(429, "test-model", "slow down")})
    durable = DurableAgent(
        _agent(model, []), wf, model_task_config=TaskConfig(retries=1, backoff=constant(0))
    )
    result = await durable.run("pay", run_id=f"{run_prefix}-429")
    assert result.output == "paid" and model.attempts == 3


async def test_user_error_in_tool_is_not_retried(wf: Workflow, run_prefix: str) -> None:
    attempts: list[int] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("broken", {}, tool_call_id="b")])

    agent = Agent(FunctionModel(respond), name="broken-agent")

    @agent.tool_plain
    async def broken() -> str:
        attempts.append(1)
        raise UserError("misconfigured")

    durable = DurableAgent(agent, wf, tool_task_config=TaskConfig(retries=4, backoff=constant(0)))
    with pytest.raises(UserError):
        await durable.run("go", run_id=f"{run_prefix}-user")
    assert len(attempts) == 1


async def test_per_tool_override_through_metadata(wf: Workflow, run_prefix: str) -> None:
    flaky_attempts: list[int] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if any(isinstance(m, ModelResponse) for m in messages):
            return ModelResponse(parts=[TextPart("ok")])
        return ModelResponse(parts=[ToolCallPart("flaky", {}, tool_call_id="f")])

    agent = Agent(FunctionModel(respond), name="override")

    @agent.tool_plain(metadata={"durable": TaskConfig(retries=3, backoff=constant(0))})
    async def flaky() -> str:
        flaky_attempts.append(1)
        if len(flaky_attempts) < 4:
            raise ConnectionError("blip")
        return "fine"

    # The agent-wide tool config allows no retry; the tool's metadata allows three.
    durable = DurableAgent(agent, wf, tool_task_config=TaskConfig(retries=0))
    result = await durable.run("go", run_id=f"{run_prefix}-meta")
    assert result.output == "ok" and len(flaky_attempts) == 4


def test_bad_task_config_fails_at_construction(wf: Workflow) -> None:
    agent = Agent(FunctionModel(lambda m, i: ModelResponse(parts=[TextPart("x")])), name="bad")
    with pytest.raises(TypeError, match="unknown TaskConfig keys"):
        DurableAgent(agent, wf, model_task_config={"retry": 3})  # type: ignore[arg-type]


# -- framework errors are not retried (issue 22, defect 5) --------------------------------------


async def test_unexpected_model_behavior_is_not_retried(wf: Workflow, run_prefix: str) -> None:
    model = FlakyModel({1: UnexpectedModelBehavior("the model answered with something unusable")})
    durable = DurableAgent(
        _agent(model, []), wf, model_task_config=TaskConfig(retries=5, backoff=constant(0))
    )
    with pytest.raises(UnexpectedModelBehavior, match="unusable"):
        await durable.run("pay", run_id=f"{run_prefix}-umb")
    assert model.attempts == 1, "a deterministic failure is not billed again"


async def test_pydantic_user_error_in_a_tool_is_not_retried(wf: Workflow, run_prefix: str) -> None:
    attempts: list[int] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("schema", {}, tool_call_id="s")])

    agent = Agent(FunctionModel(respond), name="schema-agent")

    @agent.tool_plain
    async def schema() -> str:
        attempts.append(1)
        raise PydanticUserError("a model class is misconfigured", code=None)

    durable = DurableAgent(agent, wf, tool_task_config=TaskConfig(retries=4, backoff=constant(0)))
    with pytest.raises(PydanticUserError):
        await durable.run("go", run_id=f"{run_prefix}-pue")
    assert len(attempts) == 1


async def test_which_errors_are_never_retried_can_be_changed(wf: Workflow, run_prefix: str) -> None:
    model = FlakyModel({1: UnexpectedModelBehavior("a provider hiccup this app knows to retry")})
    config = TaskConfig(retries=2, backoff=constant(0), non_retryable=())
    durable = DurableAgent(_agent(model, []), wf, model_task_config=config)
    result = await durable.run("pay", run_id=f"{run_prefix}-changed")
    assert result.output == "paid" and model.attempts == 3
    assert set(default_non_retryable()) == {
        UserError,
        PydanticUserError,
        UnexpectedModelBehavior,
        UsageLimitExceeded,
    }


def test_a_bad_non_retryable_is_refused(wf: Workflow) -> None:
    agent = Agent(FunctionModel(lambda m, i: ModelResponse(parts=[TextPart("x")])), name="bad-nr")
    with pytest.raises(TypeError, match="non_retryable must be a tuple of exception classes"):
        DurableAgent(agent, wf, model_task_config=TaskConfig(non_retryable=("UserError",)))  # type: ignore[typeddict-item]
