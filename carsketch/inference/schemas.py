"""The JSON bodies of the server's API, validated by pydantic straight from the request's bytes and described in its
OpenAPI document."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator
from pydantic_core import PydanticCustomError

from carsketch.labels import SIDES


def _number(value: object) -> int | float:
    """A JSON number left as it came: a label's strokes are kept as sent, so an int must not turn into a float."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise PydanticCustomError("float_type", "Input should be a valid number")


Coordinate = Annotated[float, PlainValidator(_number, json_schema_input_type=float)]
Strokes = list[list[list[Coordinate]]]
EXAMPLE = [[[0, 255, 255, 0, 0], [0, 0, 255, 255, 0]]]


class PredictRequest(BaseModel):
    """POST /api/predict's JSON body: one drawing or several, as Quick, Draw! strokes in any coordinates."""

    model_config = ConfigDict(strict=True, extra="forbid")
    drawing: Strokes | None = Field(None, description="[[[x, ...], [y, ...]], ...]; further lists per stroke "
                                                       "(such as times) are ignored", examples=[EXAMPLE])
    drawings: list[Strokes] | None = Field(None, description="several drawings; results come in this order")


class Result(BaseModel):
    car_probability: float
    label: Literal[SIDES] = Field(description="car from the model's threshold up")
    bitmap: list[list[int]] | None = Field(None, description="with ?bitmap=true: the 28x28 bitmap the model saw "
                                                             "(rows of 0-255, ink bright)")


class PredictResponse(BaseModel):
    results: list[Result]


class LabelRequest(BaseModel):
    """POST /api/drawings's JSON body: one drawing, as /api/predict takes it, and the label its drawer gives it."""

    model_config = ConfigDict(strict=True, extra="forbid")
    drawing: Strokes = Field(description="[[[x, ...], [y, ...]], ...], kept as sent", examples=[EXAMPLE])
    label: Literal[SIDES] = Field(description="car or not_car")


class Kept(BaseModel):
    car: int = Field(description="labelled drawings kept as car")
    not_car: int = Field(description="... and as not car")
    total: int
    file: str = Field(description="where they are kept, on the server")


class Saved(BaseModel):
    id: str = Field(description="the saved drawing's key_id")
    kept: Kept


# The request bodies as OpenAPI describes them: the routes read their bodies themselves, to parse each once.
UPLOAD_SCHEMA = {"type": "object", "required": ["file"],
                 "properties": {"file": {"type": "string", "format": "binary",
                                         "description": "an image (PNG, JPEG, ...), read as `predict` reads images"}}}
PREDICT_BODY = {"required": True, "content": {"application/json": {"schema": PredictRequest.model_json_schema()},
                                              "multipart/form-data": {"schema": UPLOAD_SCHEMA}}}
LABEL_BODY = {"required": True, "content": {"application/json": {"schema": LabelRequest.model_json_schema()}}}
