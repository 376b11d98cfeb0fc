"""Generated from protos/grpc_predict_v2.proto by seldon_load.oip.gen_protos; do not edit."""
