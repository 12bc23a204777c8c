"""Models-from-code entry point: MLflow runs this file to build the model, so loading a logged
policy executes our code and reads plain arrays; nothing is unpickled."""

from mlflow.models import set_model

from nba.serving.pyfunc import NBAPolicyModel

set_model(NBAPolicyModel())
