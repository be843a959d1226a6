"""The post's Keras pipeline with its errors fixed (TensorFlow 2.x, tf.keras).

Kept runnable: `python -m py_compile` checks it in our tests; running it needs
tensorflow and downloads CIFAR-10 and the Keras ResNet50 weights.
"""
# ANCHOR: load
import numpy as np
import tensorflow as tf
from tensorflow.keras.applications.resnet50 import ResNet50, preprocess_input
from tensorflow.keras.callbacks import ModelCheckpoint
from tensorflow.keras.datasets import cifar10
from tensorflow.keras.layers import Dense, Dropout, GlobalAveragePooling2D
from tensorflow.keras.models import Sequential

(x_train, y_train), (x_test, y_test) = cifar10.load_data()
# ANCHOR_END: load


# ANCHOR: resize
# scipy.misc.imresize was removed in SciPy 1.3. Resize batch by batch instead of building
# 50,000 x 200 x 200 x 3 float32 arrays (24 GB) in memory.
def upscaled_batches(images, size=200, batch=256):
    for i in range(0, len(images), batch):
        x = tf.image.resize(images[i : i + batch].astype("float32"), (size, size))
        yield preprocess_input(x.numpy())
# ANCHOR_END: resize


# ANCHOR: extract
# Three channels, not input_shape=(200, 200, 2).
base = ResNet50(weights="imagenet", include_top=False, input_shape=(200, 200, 3))
train_features = np.concatenate([base.predict(b, verbose=0) for b in upscaled_batches(x_train)])
test_features = np.concatenate([base.predict(b, verbose=0) for b in upscaled_batches(x_test)])
# ANCHOR_END: extract

# ANCHOR: head
# One name for the head model (the post mixes `model` and `model_tl`), and
# the feature arrays spelt as defined (not `train_featues` / `test_featues`).
model_tl = Sequential()
model_tl.add(GlobalAveragePooling2D(input_shape=train_features.shape[1:]))
model_tl.add(Dropout(0.3))
model_tl.add(Dense(10, activation="softmax"))
model_tl.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

# The post passes `callbacks=[checkpointer]` without defining it.
checkpointer = ModelCheckpoint("model_tl.best.keras", monitor="val_accuracy", save_best_only=True, verbose=1)
model_tl.fit(
    train_features, y_train, batch_size=32, epochs=10, validation_split=0.2, callbacks=[checkpointer], verbose=1
)
model_tl.load_weights("model_tl.best.keras")
loss, accuracy = model_tl.evaluate(test_features, y_test, verbose=0)
print(f"test accuracy: {accuracy:.4f}")
# ANCHOR_END: head
