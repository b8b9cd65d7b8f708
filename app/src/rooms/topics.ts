// Names of the pub/sub topics used both by Bun's native publish and by the backplane.
export const roomTopic = (room: string) => `room:${room}`;
export const userTopic = (userId: string) => `user:${userId}`;
export const BROADCAST_TOPIC = "all";
/** The twin of a topic that batched sockets subscribe to: it gets the topic's frames joined per turn. */
export const batchedTopic = (topic: string) => `batched:${topic}`;
