"""Where `hyperserve serve` finds the model when a platform starts it with no argument."""

from __future__ import annotations

from hyperserve.server.config import platform_model_uri


def test_vertex_then_azure_then_sagemaker(tmp_path):
    sagemaker = tmp_path / "opt-ml-model"
    sagemaker.mkdir()
    azure = tmp_path / "azureml-models" / "iris" / "1"
    azure.mkdir(parents=True)
    (azure / "model.joblib").write_bytes(b"x")
    both = {"AIP_STORAGE_URI": "gs://b/m", "AZUREML_MODEL_DIR": str(azure)}
    assert platform_model_uri(both, str(sagemaker)) == "gs://b/m"
    assert platform_model_uri({"AZUREML_MODEL_DIR": str(azure)}, str(sagemaker)) == str(azure)
    assert platform_model_uri({}, str(sagemaker)) == "", "an empty /opt/ml/model is no model"
    (sagemaker / "model.joblib").write_bytes(b"x")
    assert platform_model_uri({}, str(sagemaker)) == str(sagemaker)
    assert platform_model_uri({"AIP_STORAGE_URI": ""}, str(tmp_path / "absent")) == ""


def test_azure_serves_a_registered_folder_mounted_as_the_only_entry(tmp_path):
    mount = tmp_path / "iris" / "1"
    (mount / "model").mkdir(parents=True)
    (mount / "model" / "model.joblib").write_bytes(b"x")
    assert platform_model_uri({"AZUREML_MODEL_DIR": str(mount)}) == str(mount / "model")
    (mount / "README").write_text("more than the folder")
    assert platform_model_uri({"AZUREML_MODEL_DIR": str(mount)}) == str(mount)
    missing = str(tmp_path / "missing")
    assert platform_model_uri({"AZUREML_MODEL_DIR": missing}) == missing
